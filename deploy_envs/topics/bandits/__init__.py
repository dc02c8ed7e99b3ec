"""Exploration vs exploitation: the stochastic K-armed bandit and a contextual bandit from labelled data."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "optimization, exploration, reliability",
    env("Bandit-v0", "bandit:BanditCore", "pull one of K Bernoulli or Gaussian arms (fixed, random or drifting means) for `horizon` pulls; info: pseudo-regret, optimal arm, Lai-Robbins bound", test_kwargs={"horizon": 20}),
    env("ContextualBandit-v0", "contextual_bandit:ContextualBanditCore", "see a digit, predict its class, get reward 1 only when right (bandit feedback from a labelled dataset); info: pseudo-regret against the label-knowing policy", test_kwargs={"horizon": 20}),
)

from deploy_envs.topics.bandits import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

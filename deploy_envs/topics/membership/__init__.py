"""Membership inference through a prediction API (``MembershipInference-v0``)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "model-API attacks",
    env("MembershipInference-v0", "membership_inference:MembershipCore", "guess whether each candidate record was in the victim's training set from the API's answer (overfit, regularized or DP-SGD victims); reward = correct guesses", test_kwargs={"rounds": 5}),
)

from deploy_envs.topics.membership import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

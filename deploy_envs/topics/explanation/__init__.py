"""Interpretability: explanations scored by their faithfulness (deletion / sufficiency)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "interpretability",
    env("Explanation-v0", "explanation:ExplanationCore", "rank the pixels/patches of an input; scored by how fast the victim's confidence falls as they are deleted (Petsiuk et al. 2018) or how few restore it (sufficiency)", test_kwargs={"features_per_step": 16}),
)

from deploy_envs.topics.explanation import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

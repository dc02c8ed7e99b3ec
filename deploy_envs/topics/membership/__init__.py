"""Membership inference through a prediction API (``MembershipInference-v0``)."""
from deploy_envs.core.registration import register_env

register_env(
    "MembershipInference-v0",
    core="deploy_envs.topics.membership.membership_inference:MembershipCore",
    topic="model-API attacks",
    summary="guess whether each candidate record was in the victim's training set from the API's answer (overfit, regularized or DP-SGD victims); reward = correct guesses",
    test_kwargs={"rounds": 5},
)

from deploy_envs.topics.membership import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

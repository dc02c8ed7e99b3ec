"""Goodhart's law on a learned reward: ``RewardModelGaming-v0`` (Gao, Schulman, Hilton 2022, small).

A proxy reward model trained on gold-labelled preference comparisons is optimized by best-of-n
sampling and by PPO with a KL penalty; the env reports proxy, gold and KL per episode.
:mod:`.curves` computes the gold and proxy curves against sqrt(KL) and plots them.
"""
from deploy_envs.core.registration import register_env

_M = "deploy_envs.topics.reward_model_gaming.core"

register_env(
    "RewardModelGaming-v0",
    core=f"{_M}:RewardModelGamingCore",
    topic="safe RL and alignment",
    summary="hand over a policy over candidate responses scored by a learned proxy reward; optimizing the proxy (best-of-n, PPO with a KL penalty) raises it while the hidden gold reward peaks and falls",
    test_kwargs={"num_candidates": 16, "comparisons": 100},
)

from deploy_envs.topics.reward_model_gaming import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

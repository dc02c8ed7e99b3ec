"""Safe RL: constrained navigation (a Safety-Gymnasium-style goal task on a batched numpy core).

``info["cost"]`` follows the Safety-Gymnasium/OmniSafe convention;
:mod:`deploy_envs.integrations.safety_gymnasium` gives their 6-tuple ``step``.
"""
from deploy_envs.core.registration import register_env

SAFE_NAVIGATION_ID = register_env(
    "SafeNavigation-v0",
    entry_point="deploy_envs.envs.safety.navigation:SafeNavigationEnv",
    vector_entry_point="deploy_envs.envs.safety.navigation:SafeNavigationVectorEnv",
    topic="safe RL and alignment",
    summary="point robot reaches goals on a plane; each step inside a hazard costs 1 (constrained MDP, levels 0/1/2 as in Safety-Gymnasium)",
    test_kwargs={"level": 2, "max_steps": 25},
)

DISTURBED_NAVIGATION_ID = register_env(
    "DisturbedNavigation-v0",
    entry_point="deploy_envs.envs.safety.disturbed:DisturbedNavigationEnv",
    vector_entry_point="deploy_envs.envs.safety.disturbed:DisturbedNavigationVectorEnv",
    topic="safe RL and alignment",
    summary="SafeNavigation with a bounded push played by a random force, a steady wind or a trained RARL adversary: tests a navigation policy's robustness",
    test_kwargs={"level": 2, "max_steps": 25, "opponent": "random"},
)

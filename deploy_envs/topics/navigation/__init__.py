"""Safe RL: constrained navigation (a Safety-Gymnasium-style goal task on a batched numpy core).

``info["cost"]`` follows the Safety-Gymnasium/OmniSafe convention;
:mod:`deploy_envs.integrations.safety_gymnasium` gives their 6-tuple ``step``.
"""
from deploy_envs.core.registration import env, game, register_topic

SAFE_NAVIGATION_ID, DISTURBED_NAVIGATION_ID, _ = register_topic(
    __name__, "safe RL and alignment",
    env("SafeNavigation-v0", "safe_navigation:SafeNavigationCore", "point robot reaches goals on a plane; each step inside a hazard costs 1 (constrained MDP, levels 0/1/2 as in Safety-Gymnasium)", test_kwargs={"level": 2, "max_steps": 25}),
    env("DisturbedNavigation-v0", "disturbed_navigation:DisturbedNavigationCore", "SafeNavigation with a bounded push played by a random force, a steady wind or a trained RARL adversary: tests a navigation policy's robustness", test_kwargs={"level": 2, "max_steps": 25, "opponent": "random"}),
    game("RobustNavigation-v0", "robust_navigation:RobustNavigationCore", "Robust Adversarial RL on SafeNavigation: a protagonist drives the robot while an adversary applies a bounded disturbance force, rewarded by the protagonist's loss and cost", test_kwargs={"max_steps": 40}),
)

from deploy_envs.topics.navigation import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

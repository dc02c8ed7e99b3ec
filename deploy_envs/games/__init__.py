"""PettingZoo parallel games, built from the same batched cores as the single-agent envs.

Importing this package records every game in :data:`~deploy_envs.core.registration.GAME_CATALOG`;
build one with :func:`deploy_envs.make_game`::

    from deploy_envs import make_game

    env = make_game("deploy_envs/AttackDefense-v0", epsilon=0.2)
    obs, infos = env.reset(seed=0)
"""
from deploy_envs.core.registration import register_game

register_game(
    "AttackDefense-v0",
    factory="deploy_envs.games.attack_defense:parallel_env",
    topic="adversarial examples",
    summary="an linf evasion attacker against a defender choosing quantization, denoising, randomized smoothing or a robust model each round",
    test_kwargs={"rounds": 3, "n_samples": 4},
)

register_game(
    "RobustNavigation-v0",
    factory="deploy_envs.games.robust_control:parallel_env",
    topic="safe RL and alignment",
    summary="Robust Adversarial RL on SafeNavigation: a protagonist drives the robot while an adversary applies a bounded disturbance force, rewarded by the protagonist's loss and cost",
    test_kwargs={"max_steps": 40},
)
from deploy_envs.games import lending_market as _lending_market  # noqa: F401  (LendingMarket-v0)
from deploy_envs.games import poisoning_sanitizer as _poisoning_sanitizer  # noqa: E402,F401  (PoisoningSanitizer-v0)
from deploy_envs.games import trojan_audit as _trojan_audit  # noqa: E402,F401

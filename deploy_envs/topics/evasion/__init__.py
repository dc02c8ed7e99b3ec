"""Adversarial examples: evasion within an Lp budget and under spatial transformations."""
from deploy_envs.core.registration import register_env, register_game

register_env(
    "Evasion-v0",
    core="deploy_envs.topics.evasion.evasion:EvasionCore",
    topic="adversarial examples",
    summary="perturb a correctly classified input within an Lp ball until the victim errs (white-box, scores or decision threat)",
    test_kwargs={"max_queries": 5},
)

register_env(
    "SpatialEvasion-v0",
    core="deploy_envs.topics.evasion.spatial_evasion:SpatialEvasionCore",
    topic="adversarial examples",
    summary="rotate (+-30 deg) and translate (+-3 px per 28) a correctly classified input until the victim errs (scores or decision threat; continuous or Engstrom grid actions)",
    test_kwargs={"max_queries": 5},
)

register_game(
    "AttackDefense-v0",
    core="deploy_envs.topics.evasion.attack_defense:AttackDefenseCore",
    topic="adversarial examples",
    summary="an linf evasion attacker against a defender choosing quantization, denoising, randomized smoothing or a robust model each round",
    test_kwargs={"rounds": 3, "n_samples": 4},
)

from deploy_envs.topics.evasion import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)
from deploy_envs.topics.evasion import spatial_baselines as _spatial_baselines  # noqa: E402,F401  (registers the reference agents)

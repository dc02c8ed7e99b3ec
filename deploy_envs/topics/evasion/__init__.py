"""Adversarial examples: evasion within an Lp budget and under spatial transformations."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "adversarial examples",
    env("Evasion-v0", "evasion:EvasionCore", "perturb a correctly classified input within an Lp ball until the victim errs (white-box, scores or decision threat)", test_kwargs={"max_queries": 5}),
    env("SpatialEvasion-v0", "spatial_evasion:SpatialEvasionCore", "rotate (+-30 deg) and translate (+-3 px per 28) a correctly classified input until the victim errs (scores or decision threat; continuous or Engstrom grid actions)", test_kwargs={"max_queries": 5}),
    game("AttackDefense-v0", "attack_defense:AttackDefenseCore", "an linf evasion attacker against a defender choosing quantization, denoising, randomized smoothing or a robust model each round", test_kwargs={"rounds": 3, "n_samples": 4}),
)

from deploy_envs.topics.evasion import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)
from deploy_envs.topics.evasion import spatial_baselines as _spatial_baselines  # noqa: E402,F401  (registers the reference agents)

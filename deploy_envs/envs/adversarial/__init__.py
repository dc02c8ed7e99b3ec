"""Adversarial examples: evasion within an Lp budget and under spatial transformations."""
from deploy_envs.core.registration import register_env

register_env(
    "Evasion-v0",
    entry_point="deploy_envs.envs.adversarial.evasion:EvasionEnv",
    vector_entry_point="deploy_envs.envs.adversarial.evasion:EvasionVectorEnv",
    topic="adversarial examples",
    summary="perturb a correctly classified input within an Lp ball until the victim errs (white-box, scores or decision threat)",
    test_kwargs={"max_queries": 5},
)

register_env(
    "SpatialEvasion-v0",
    entry_point="deploy_envs.envs.adversarial.spatial:SpatialEvasionEnv",
    vector_entry_point="deploy_envs.envs.adversarial.spatial:SpatialEvasionVectorEnv",
    topic="adversarial examples",
    summary="rotate (+-30 deg) and translate (+-3 px per 28) a correctly classified input until the victim errs (scores or decision threat; continuous or Engstrom grid actions)",
    test_kwargs={"max_queries": 5},
)

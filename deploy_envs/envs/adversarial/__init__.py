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

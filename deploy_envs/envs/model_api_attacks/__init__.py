"""Model-API attacks: model extraction (and, later, membership inference) through a prediction API."""
from deploy_envs.core.registration import register_env

register_env(
    "ModelExtraction-v0",
    entry_point="deploy_envs.envs.model_api_attacks.extraction:ModelExtractionEnv",
    vector_entry_point="deploy_envs.envs.model_api_attacks.extraction:ModelExtractionVectorEnv",
    topic="model-API attacks",
    summary="query a victim's prediction API (labels, top-k or probabilities; rounding, noise or PRADA defenses) to train a surrogate; reward = fidelity gain",
    test_kwargs={"max_queries": 20, "batch_size": 5, "holdout": 60, "fit_steps": 3},
)

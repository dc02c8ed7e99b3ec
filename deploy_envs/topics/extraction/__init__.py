"""Model extraction through a prediction API (``ModelExtraction-v0``) and the extractor-vs-guard game (``ExtractionGuard-v0``)."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "model-API attacks",
    env("ModelExtraction-v0", "model_extraction:ExtractionCore", "query a victim's prediction API (labels, top-k or probabilities; rounding, noise or PRADA defenses) to train a surrogate; reward = fidelity gain", test_kwargs={"max_queries": 20, "batch_size": 5, "holdout": 60, "fit_steps": 3}),
    game("ExtractionGuard-v0", "extraction_guard:ExtractionGuardCore", "a model thief queries a prediction API while a guard sets output granularity, noise and a PRADA detection threshold each round, scored on the thief's fidelity and on the utility kept for a benign query stream", test_kwargs={"rounds": 4, "batch_size": 5, "benign_queries": 5, "holdout": 60, "fit_steps": 3}),
)

from deploy_envs.topics.extraction import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

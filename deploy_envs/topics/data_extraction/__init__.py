"""Training-data extraction from a language model by searching its likelihood (``DataExtraction-v0``)."""
from deploy_envs.core.registration import register_env

register_env(
    "DataExtraction-v0",
    core="deploy_envs.topics.data_extraction.data_extraction:DataExtractionCore",
    topic="privacy",
    summary="search a character-level language model's likelihood through its query API for a canary's 6-digit secret "
            "(victims: canary inserted 0, 1, 4, 16 times, or 16 with DP-SGD); reward = secret digits recovered, minus a query cost",
    test_kwargs={"query_budget": 12, "slots": 12, "capacity": 64},
)

from deploy_envs.topics.data_extraction import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

"""Training-data extraction from a language model by searching its likelihood (``DataExtraction-v0``)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "privacy",
    env("DataExtraction-v0", "data_extraction:DataExtractionCore", "search a character-level language model's likelihood through its query API for a canary's 6-digit secret "
            "(victims: canary inserted 0, 1, 4, 16 times, or 16 with DP-SGD); reward = secret digits recovered, minus a query cost", test_kwargs={"query_budget": 12, "slots": 12, "capacity": 64}),
)

from deploy_envs.topics.data_extraction import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

"""Training-data attacks: poisoning a victim's training set (``Poisoning-v0``)."""
from deploy_envs.core.registration import register_env, register_game

register_env(
    "Poisoning-v0",
    core="deploy_envs.topics.poisoning.poisoning:PoisoningCore",
    topic="training-data attacks",
    summary="inject poison points (features + label) into a linear victim's training set within a budget; the victim retrains warm-started; indiscriminate or targeted; optional sanitizer",
    test_kwargs={"budget": 0.004, "train_steps": 3, "final_train_steps": 5},
)

register_game(
    "PoisoningSanitizer-v0",
    core="deploy_envs.topics.poisoning.poisoning_sanitizer:PoisoningSanitizerCore",
    topic="training-data attacks",
    summary="a data poisoner injects points while a sanitizer picks its filter (centroid, loss, k-NN) and strength each round, paying for the clean data it would discard; zero-sum on the victim's test error",
    test_kwargs={"budget": 0.004, "train_steps": 3, "final_train_steps": 5},
)

from deploy_envs.topics.poisoning import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

"""Training-data attacks: poisoning a victim's training set (``Poisoning-v0``)."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "training-data attacks",
    env("Poisoning-v0", "poisoning:PoisoningCore", "inject poison points (features + label) into a linear victim's training set within a budget; the victim retrains warm-started; indiscriminate or targeted; optional sanitizer", test_kwargs={"budget": 0.004, "train_steps": 3, "final_train_steps": 5}),
    game("PoisoningSanitizer-v0", "poisoning_sanitizer:PoisoningSanitizerCore", "a data poisoner injects points while a sanitizer picks its filter (centroid, loss, k-NN) and strength each round, paying for the clean data it would discard; zero-sum on the victim's test error", test_kwargs={"budget": 0.004, "train_steps": 3, "final_train_steps": 5}),
)

from deploy_envs.topics.poisoning import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

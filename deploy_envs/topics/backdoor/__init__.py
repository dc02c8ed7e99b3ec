"""Training-data attacks: planting a backdoor in a victim through poisoned training data (``Backdoor-v0``)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "training-data attacks",
    env("Backdoor-v0", "backdoor:BackdoorCore", "design a backdoor trigger (patch pattern + mask + position, or a blend) and poison a fraction of the training set with it; a batched MLP victim trains; reward: attack success - clean-accuracy drop - spectral-signature detection", test_kwargs={"hidden_sizes": [16], "train_steps": 5}),
)

from deploy_envs.topics.backdoor import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

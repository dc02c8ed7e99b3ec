"""Training-data attacks: planting a backdoor in a victim through poisoned training data (``Backdoor-v0``)."""
from deploy_envs.core.registration import register_env

register_env(
    "Backdoor-v0",
    core="deploy_envs.topics.backdoor.backdoor:BackdoorCore",
    topic="training-data attacks",
    summary="design a backdoor trigger (patch pattern + mask + position, or a blend) and poison a fraction of the training set with it; a batched MLP victim trains; reward: attack success - clean-accuracy drop - spectral-signature detection",
    test_kwargs={"hidden_sizes": [16], "train_steps": 5},
)

from deploy_envs.topics.backdoor import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

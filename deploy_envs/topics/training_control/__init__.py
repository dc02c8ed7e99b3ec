"""Optimization in the loop: the agent sets the training schedule of a small network (SGD)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "optimization, exploration, reliability",
    env("TrainingControl-v0", "training_control:TrainingControlCore", "set the learning rate (log scale), batch size and weight decay of each chunk of SGD on a small network; rewarded by validation improvement, with test accuracy hidden; label noise and random labels (Zhang et al. 2017)", test_kwargs={"horizon": 6, "steps_per_action": 3, "train_size": 64, "val_size": 64, "hidden": 8, "batch_size_range": (4, 16)}),
)

from deploy_envs.topics.training_control import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

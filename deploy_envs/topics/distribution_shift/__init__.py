"""Reliability in deployment: a deployed classifier whose inputs drift (corruptions or label shift)."""
from deploy_envs.core.registration import env, register_topic

register_topic(
    __name__, "optimization, exploration, reliability",
    env("DistributionShift-v0", "distribution_shift:DistributionShiftCore", "operate a deployed classifier on a stream of batches that shifts (corruption or label prior) at a hidden change point: serve, defer the least confident inputs, raise an alarm, or adapt (BBSE, last-layer fine-tuning)", test_kwargs={"batch_size": 8, "horizon": 8, "change_range": (2, 5), "finetune_samples": 8, "finetune_steps": 3}),
)

from deploy_envs.topics.distribution_shift import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

"""Interpretability: auditing classifiers for hidden backdoor triggers (``TrojanDetection-v0``)."""
from deploy_envs.core.registration import register_env

register_env(
    "TrojanDetection-v0",
    core="deploy_envs.topics.trojans.trojan_detection:TrojanDetectionCore",
    topic="interpretability",
    summary="audit a digits classifier drawn from a clean/trojaned population: probe candidate trigger masks+patterns on clean inputs, then declare clean or trojaned, the target class and the trigger mask (reward: verdict + target + IoU - query cost)",
    test_kwargs={"max_queries": 3, "probe_size": 8},
)

from deploy_envs.topics.trojans import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)
from deploy_envs.topics.trojans import trojan_audit as _trojan_audit  # noqa: E402,F401  (registers the game)

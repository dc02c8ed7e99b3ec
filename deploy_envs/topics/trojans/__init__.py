"""Interpretability: auditing classifiers for hidden backdoor triggers (``TrojanDetection-v0``)."""
from deploy_envs.core.registration import register_env, register_game

register_env(
    "TrojanDetection-v0",
    core="deploy_envs.topics.trojans.trojan_detection:TrojanDetectionCore",
    topic="interpretability",
    summary="audit a digits classifier drawn from a clean/trojaned population: probe candidate trigger masks+patterns on clean inputs, then declare clean or trojaned, the target class and the trigger mask (reward: verdict + target + IoU - query cost)",
    test_kwargs={"max_queries": 3, "probe_size": 8},
)

register_game(
    "TrojanAudit-v0",
    core="deploy_envs.topics.trojans.trojan_audit:TrojanAuditCore",
    topic="interpretability",
    summary="a trojan designer plants (or not) a patch/blend trigger under a clean-accuracy constraint; an auditor probes the trained victim under a query budget and declares clean or trojaned; zero-sum on detection",
    test_kwargs={"max_queries": 3, "train_points": 200, "train_steps": 20, "probe_size": 8},
)

from deploy_envs.topics.trojans import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

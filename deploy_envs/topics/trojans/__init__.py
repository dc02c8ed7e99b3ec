"""Interpretability: auditing classifiers for hidden backdoor triggers (``TrojanDetection-v0``)."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "interpretability",
    env("TrojanDetection-v0", "trojan_detection:TrojanDetectionCore", "audit a digits classifier drawn from a clean/trojaned population: probe candidate trigger masks+patterns on clean inputs, then declare clean or trojaned, the target class and the trigger mask (reward: verdict + target + IoU - query cost)", test_kwargs={"max_queries": 3, "probe_size": 8}),
    game("TrojanAudit-v0", "trojan_audit:TrojanAuditCore", "a trojan designer plants (or not) a patch/blend trigger under a clean-accuracy constraint; an auditor probes the trained victim under a query budget and declares clean or trojaned; zero-sum on detection", test_kwargs={"max_queries": 3, "train_points": 200, "train_steps": 20, "probe_size": 8}),
)

from deploy_envs.topics.trojans import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

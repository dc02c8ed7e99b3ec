"""Auditing DP-SGD: empirical epsilon lower bounds from designed canaries (``PrivacyAudit-v0``) and the trainer-vs-auditor game (``PrivacyGame-v0``)."""
from deploy_envs.core.registration import register_env

register_env(
    "PrivacyAudit-v0",
    entry_point="deploy_envs.topics.privacy_audit.privacy_audit:PrivacyAuditEnv",
    vector_entry_point="deploy_envs.topics.privacy_audit.privacy_audit:PrivacyAuditVectorEnv",
    topic="privacy",
    summary="design a canary (input point and label, or a gradient) and a threshold; the env trains DP-SGD models with and "
            "without it; reward = empirical epsilon lower bound (Clopper-Pearson) vs the accountant's claim",
    test_kwargs={"runs": 8, "rounds": 2, "epochs": 1, "train_size": 64, "batch_size": 16},
)

from deploy_envs.topics.privacy_audit import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)
from deploy_envs.topics.privacy_audit import privacy_game as _privacy_game  # noqa: E402,F401  (registers PrivacyGame-v0)

"""Auditing DP-SGD: empirical epsilon lower bounds from designed canaries (``PrivacyAudit-v0``) and the trainer-vs-auditor game (``PrivacyGame-v0``)."""
from deploy_envs.core.registration import env, game, register_topic

register_topic(
    __name__, "privacy",
    env("PrivacyAudit-v0", "privacy_audit:PrivacyAuditCore", "design a canary (input point and label, or a gradient) and a threshold; the env trains DP-SGD models with and "
            "without it; reward = empirical epsilon lower bound (Clopper-Pearson) vs the accountant's claim", test_kwargs={"runs": 8, "rounds": 2, "epochs": 1, "train_size": 64, "batch_size": 16}, extra="privacy"),
    game("PrivacyGame-v0", "privacy_game:PrivacyGameCore", "a trainer sets DP-SGD's noise multiplier and clipping norm and pays for lost accuracy; an auditor designs a canary "
            "and threshold and is paid the empirical epsilon lower bound", test_kwargs={"rounds": 2, "runs": 8, "epochs": 1, "train_size": 64, "batch_size": 16}, extra="privacy"),
)

from deploy_envs.topics.privacy_audit import baselines as _baselines  # noqa: E402,F401  (registers the reference agents)

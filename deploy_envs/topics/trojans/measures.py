"""Population-level measures of the trojan audit, for scenarios (``agents: {x: {measure: ...}}``).

:func:`neural_cleanse_population` runs Neural Cleanse (Wang et al. 2019) on every model of
the population with one clean probe set and returns the AUROC of the anomaly index (clean
vs patch, clean vs blend), the share of each kind flagged (anomaly index > 2) and the share
of trojaned models whose target class it names. The probe set is the env's
(``probe_size``, ``probe_seed``), so a scenario can draw it several times
(``protocol.draws: {probe_seed: [...]}``) and report the figures across draws.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def neural_cleanse_population(env_kwargs: dict[str, Any], seed: int = 0, *, steps: int = 300, models: list[int] | None = None) -> dict[str, float]:
    """Neural Cleanse over the whole population (or ``models``) on the env's probe set; one value per metric.

    ``seed`` seeds torch (the optimisation starts from a fixed point; it sets the RNG for
    any later sampling). Metrics: ``auroc_patch``, ``auroc_blend`` (clean vs each kind; NaN
    when a kind is absent), ``flagged_clean``, ``flagged_patch``, ``flagged_blend``,
    ``target_patch``, ``target_blend``, ``models``.
    """
    import torch
    from sklearn.metrics import roc_auc_score

    from deploy_envs.topics.trojans.baselines import ANOMALY_THRESHOLD, neural_cleanse
    from deploy_envs.topics.trojans.trojan_detection import TrojanDetectionCore

    keep = {k: env_kwargs[k] for k in ("population", "probe_size", "probe_seed") if k in env_kwargs}
    core = TrojanDetectionCore(num_envs=1, **keep)
    pop = core.pop
    idx = np.arange(len(pop)) if models is None else np.asarray(models, dtype=np.int64)
    torch.manual_seed(int(seed))
    res = neural_cleanse([p[torch.as_tensor(idx)] for p in pop.params], core.probe_x, steps=steps)
    ai, target = res["anomaly_index"], res["target"]
    kinds, truth = pop.kinds[idx], pop.targets[idx]
    out: dict[str, float] = {"models": float(len(idx))}
    clean = kinds == "clean"
    out["flagged_clean"] = float((ai[clean] > ANOMALY_THRESHOLD).mean()) if clean.any() else float("nan")
    for kind in ("patch", "blend"):
        sel = kinds == kind
        if sel.any() and clean.any():
            both = clean | sel
            out[f"auroc_{kind}"] = float(roc_auc_score(sel[both], ai[both]))
        else:
            out[f"auroc_{kind}"] = float("nan")
        out[f"flagged_{kind}"] = float((ai[sel] > ANOMALY_THRESHOLD).mean()) if sel.any() else float("nan")
        out[f"target_{kind}"] = float((target[sel] == truth[sel]).mean()) if sel.any() else float("nan")
    return out

"""The exposure table of the shipped ``DataExtraction-v0`` victims (repetitions x training) and its plot.

Exposure (Carlini et al. 2019) of each of the four canaries of each victim, computed
exactly over all ``10^6`` candidate secrets (:func:`~deploy_envs.topics.data_extraction.lm.exact_rank`),
with the mean over the canaries and its 95% t-interval (n = 4 canaries per victim).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from deploy_envs.core.rendering import save_figure
from deploy_envs.topics.data_extraction.lm import CANARY_NAMES, SECRET_LENGTH


def exposure_table(victims: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """One row per victim: repetitions, DP epsilon, per-canary exposure and rank, mean with its 95% interval."""
    from scipy import stats

    from deploy_envs.topics.data_extraction.baselines import enumerate_exposure
    from deploy_envs.topics.data_extraction.victims import VICTIM_RECIPES, VICTIMS

    rows = []
    for name in victims or VICTIMS:
        recipe = VICTIM_RECIPES[name]
        ex = enumerate_exposure(name)
        values = np.array([e["exposure"] for e in ex.values()])
        n = len(values)
        half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        rows.append({
            "victim": name,
            "repetitions": recipe.repetitions,
            "dp": recipe.dp,
            "epsilon": _epsilon(recipe),
            "exposure": {k: v["exposure"] for k, v in ex.items()},
            "rank": {k: v["rank"] for k, v in ex.items()},
            "mean_exposure": float(values.mean()),
            "ci95": [float(values.mean()) - half, float(values.mean()) + half],
            "n": n,
            "max_exposure": SECRET_LENGTH * math.log2(10),
        })
    return rows


def _epsilon(recipe) -> float | None:
    if not recipe.dp:
        return None
    from deploy_envs.topics.data_extraction.lm import dp_epsilon

    return dp_epsilon(recipe)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| victim | inserted | DP epsilon | " + " | ".join(CANARY_NAMES) + " | mean [95% CI], n=4 |"
    lines = [head, "|" + "---|" * (4 + len(CANARY_NAMES))]
    for r in rows:
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        cells = " | ".join(f"{r['exposure'][c]:.1f}" for c in CANARY_NAMES)
        lines.append(f"| {r['victim']} | x{r['repetitions']} | {eps} | {cells} | {r['mean_exposure']:.1f} [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}] |")
    return "\n".join(lines)


def exposure_report(path: str | Path, results: str | Path | None = None) -> Path:
    """Write the exposure plot to ``path`` (PNG) and the table as JSON beside it (or to ``results``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = exposure_table()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = Path(results) if results is not None else path.with_suffix(".json")
    out.write_text(json.dumps({"rows": rows, "markdown": markdown(rows)}, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['victim']}" for r in rows]
    x = np.arange(len(rows))
    for j, c in enumerate(CANARY_NAMES):
        ax.scatter(x + (j - 1.5) * 0.08, [r["exposure"][c] for r in rows], s=14, label=c)
    means = [r["mean_exposure"] for r in rows]
    err = np.array([[m - r["ci95"][0], r["ci95"][1] - m] for m, r in zip(means, rows)]).T
    ax.errorbar(x, means, yerr=err, fmt="k_", capsize=4, label="mean, 95% CI")
    ax.axhline(SECRET_LENGTH * math.log2(10), color="grey", ls=":", lw=1)
    ax.set_xticks(x, labels)
    ax.set_ylabel("exposure (bits)")
    ax.set_title("Canary exposure by insertions and DP-SGD (exact over 10^6 secrets)", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    return save_figure(fig, path, dpi=120)

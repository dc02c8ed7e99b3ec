"""Plots people would rather look at than read: scenario results as grouped bars."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_scenario(result, path: str | Path, metric: str = "success_rate") -> Path:
    """Grouped bars of ``metric`` per agent across the scenario's sweep points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    sweep_keys = list(result.scenario.sweep)
    labels = list(dict.fromkeys(", ".join(f"{k}={r[k]}" for k in sweep_keys) or "all" for r in rows))
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels) * max(1, len(agents)) / 2), 3.5))
    width = 0.8 / max(1, len(agents))
    for j, a in enumerate(agents):
        vals = []
        for lab in labels:
            hit = [r for r in rows if r["agent"] == a and (", ".join(f"{k}={r[k]}" for k in sweep_keys) or "all") == lab]
            vals.append(hit[0].get(metric, np.nan) if hit else np.nan)
        ax.bar(np.arange(len(labels)) + j * width, vals, width, label=a)
    ax.set_xticks(np.arange(len(labels)) + width * (len(agents) - 1) / 2, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(result.scenario.name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_suite(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Per-env bars of visible reward and hidden performance (and cost where measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["env_id"].split("/")[-1] for r in rows]
    keys = [k for k in ("reward", "hidden_performance", "cost") if any(k in r for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 3.8))
    width = 0.8 / max(1, len(keys))
    x = np.arange(len(rows))
    for j, k in enumerate(keys):
        ax.bar(x + j * width, [r.get(k, np.nan) for r in rows], width, label=k)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(x + width * (len(keys) - 1) / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

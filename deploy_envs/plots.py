"""Plots people would rather look at than read: scenario results as grouped bars."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_envs.core.rendering import save_figure


def _metric_to_plot(result, metric: str | None) -> str:
    """``metric`` if the rows carry it; by default success_rate, else the first metric the checks compare."""
    have = [k for k in dict.fromkeys(k for r in result.rows for k in r) if isinstance(result.rows[0].get(k), (int, float))]
    if metric is not None:
        if not any(metric in r for r in result.rows):
            raise ValueError(f"metric={metric!r}: no result row of scenario {result.scenario.name!r} has it; available: {', '.join(have)}")
        return metric
    if any("success_rate" in r for r in result.rows):
        return "success_rate"
    from deploy_envs.scenarios.runner import parse_expectation

    for c in result.checks:
        for _, _, name in parse_expectation(c.expression)[1]:
            if any(name in r for r in result.rows) and not name.endswith("limit"):
                return name
    raise ValueError(f"scenario {result.scenario.name!r} has no success_rate to plot; name a metric (available: {', '.join(have)})")


def plot_scenario(result, path: str | Path, metric: str | None = None) -> Path:
    """Grouped bars of ``metric`` per agent across the scenario's sweep points, with 95% intervals as error bars.

    By default the success rate, or else the first metric the scenario's checks
    compare; a metric that no row carries raises ``ValueError`` naming what is there.
    """
    metric = _metric_to_plot(result, metric)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    sweep_keys = list(result.scenario.sweep)
    labels = list(dict.fromkeys(", ".join(f"{k}={r[k]}" for k in sweep_keys) or "all" for r in rows))
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels) * max(1, len(agents)) / 2), 3.5))
    width = 0.8 / max(1, len(agents))
    ivs_of = getattr(result, "intervals", [])
    for j, a in enumerate(agents):
        vals, ivs = [], []
        for lab in labels:
            hit = [i for i, r in enumerate(rows) if r["agent"] == a and (", ".join(f"{k}={r[k]}" for k in sweep_keys) or "all") == lab]
            vals.append(rows[hit[0]].get(metric, np.nan) if hit else np.nan)
            ivs.append(ivs_of[hit[0]].get(metric) if hit and hit[0] < len(ivs_of) else None)
        ax.bar(np.arange(len(labels)) + j * width, vals, width, label=a, yerr=_errs(ivs, vals), capsize=3)
    ax.set_xticks(np.arange(len(labels)) + width * (len(agents) - 1) / 2, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (bars: 95% interval)")
    ax.set_title(result.scenario.name)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def plot_suite(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Per-env bars of visible reward and hidden performance (and cost where measured), with 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["env_id"].split("/")[-1] for r in rows]
    keys = [k for k in ("reward", "hidden_performance", "cost") if any(k in r for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 3.8))
    width = 0.8 / max(1, len(keys))
    x = np.arange(len(rows))
    for j, k in enumerate(keys):
        vals = [r.get(k, np.nan) for r in rows]
        ax.bar(x + j * width, vals, width, label=k, yerr=_errs([r.get("intervals", {}).get(k) for r in rows], vals), capsize=2)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(x + width * (len(keys) - 1) / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def _errs(ivs: list, values: list[float]):
    """Asymmetric error-bar array (2, n) from intervals (Interval objects or dicts; None: no bar)."""
    lo, hi = [], []
    for iv, v in zip(ivs, values):
        if iv is None:
            lo.append(0.0)
            hi.append(0.0)
            continue
        low, high = (iv.low, iv.high) if hasattr(iv, "low") else (iv.get("low"), iv.get("high"))
        lo.append(0.0 if low is None or not np.isfinite(v) else max(0.0, v - low))
        hi.append(0.0 if high is None or not np.isfinite(v) else max(0.0, high - v))
    return np.array([lo, hi])


def plot_scorecard(summary: dict[str, float], path: str | Path, title: str = "", intervals: dict | None = None) -> Path:
    """Horizontal bars of an evaluation's metric means with their 95% intervals as error bars (``deploy-envs evaluate ENV --plot``)."""
    items = [(k, float(v)) for k, v in sorted(summary.items()) if isinstance(v, (int, float)) and np.isfinite(v)]
    if not items:
        raise ValueError("the scorecard has no finite metric to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1.2))
    names, values = zip(*items)
    ivs = [(intervals or {}).get(k) for k in names]
    ax.barh(np.arange(len(items)), values, color="tab:blue", xerr=_errs(ivs, list(values)), capsize=3)
    ax.set_yticks(np.arange(len(items)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("mean over episodes (bars: 95% interval)" if intervals else "mean over episodes")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=100)

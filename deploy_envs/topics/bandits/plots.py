"""Regret curves per agent (matplotlib): cumulative pseudo-regret against t, linear and log time axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy_envs.core.rendering import save_figure


def plot_regret_curves(curves: dict, path: str | Path, title: str = "regret") -> Path:
    """Two panels of mean cumulative pseudo-regret (+-2 standard errors) for each agent.

    Left: against ``t`` (linear regret is a straight line). Right: against ``ln t``
    (logarithmic regret is a straight line), with the Lai-Robbins bound
    ``C_LR ln t`` dashed when the bandit is stationary.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    lr_const = None
    for name, c in curves.items():
        t = c.t
        for ax in axes:
            (line,) = ax.plot(t, c.mean, label=name, lw=1.5)
            ax.fill_between(t, c.mean - 2 * c.stderr, c.mean + 2 * c.stderr, color=line.get_color(), alpha=0.2, lw=0)
        if c.lai_robbins_constant:
            lr_const = c.lai_robbins_constant
    if lr_const is not None:
        t = next(iter(curves.values())).t
        for ax in axes:
            ax.plot(t, lr_const * np.log(t), "k--", lw=1, label=f"Lai-Robbins {lr_const:.2f} ln t")
    axes[0].set_xlabel("pulls t")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("pulls t (log scale)")
    for ax in axes:
        ax.set_ylabel("cumulative pseudo-regret")
        ax.grid(alpha=0.3)
    # the log panel's y-range follows the good agents (linear regret would flatten them)
    finals = sorted(float(c.mean[-1]) for c in curves.values())
    if len(finals) > 1 and finals[-1] > 5 * finals[0] > 0:
        axes[1].set_ylim(0, 3 * np.median(finals))
    axes[1].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    return save_figure(fig, path, dpi=100)

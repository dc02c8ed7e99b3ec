"""Multi-step dynamics of ``FairLending-v0`` under fixed threshold policies, and their plot.

Liu et al. (2018) look one step ahead; D'Amour et al. (2020, "Fairness is Not Static")
show that over many steps the picture can change. :func:`mean_score_trajectories` runs
each reference policy on a native batch of the env (same seeds for every policy) and
returns the groups' mean scores after every step, averaged over the copies;
:func:`plot_mean_scores` draws them (one panel per group, one line per policy)::

    python -m deploy_envs.topics.lending.dynamics --out fairness_dynamics.png
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import deploy_envs  # noqa: F401  (registers the env)
from deploy_envs.core.agents import make_baseline
from deploy_envs.core.rendering import save_figure

ENV_ID = "deploy_envs/FairLending-v0"
DEFAULT_POLICIES = ("max_profit", "demographic_parity", "equal_opportunity", "lend_to_all")
DEFAULT_KWARGS = {"groups": "liu", "loss": 4.0, "population_size": 2000, "applicants_per_step": 200, "horizon": 100}
log = logging.getLogger(__name__)


def mean_score_trajectories(
    policies: tuple[str, ...] = DEFAULT_POLICIES,
    env_kwargs: dict[str, Any] | None = None,
    num_envs: int = 8,
    seed: int = 0,
) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Per policy, an array ``(horizon + 1, G)`` of group mean scores (step 0 = the start), mean over copies."""
    kwargs = {**DEFAULT_KWARGS, **(env_kwargs or {})}
    out: dict[str, np.ndarray] = {}
    groups: tuple[str, ...] = ()
    for name in policies:
        env = gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
        core = env.unwrapped.core
        groups = core.groups
        agent = make_baseline(name, ENV_ID)
        agent.setup(env)
        obs, info = env.reset(seed=seed)
        series = [np.stack([info[f"mean_score_{g}"] for g in core.keys], 1).mean(0)]
        start = np.ones(num_envs, bool)
        for _ in range(core.horizon):
            obs, _, term, trunc, info = env.step(agent.act(obs, start))
            start[:] = False
            series.append(np.stack([info[f"mean_score_{g}"] for g in core.keys], 1).mean(0))
        env.close()
        out[name] = np.array(series)
        log.info("%s: final mean scores %s", name, np.round(out[name][-1], 1))
    return groups, out


def plot_mean_scores(path: str | Path, policies: tuple[str, ...] = DEFAULT_POLICIES, env_kwargs: dict[str, Any] | None = None, num_envs: int = 8, seed: int = 0) -> Path:
    """Write a PNG of the groups' mean scores over time, one line per policy; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, series = mean_score_trajectories(policies, env_kwargs, num_envs, seed)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.5), sharex=True)
    for j, (ax, g) in enumerate(zip(np.atleast_1d(axes), groups)):
        for name, s in series.items():
            ax.plot(np.arange(len(s)), s[:, j], label=name.replace("_", " "))
        ax.set_title(f"{g}: mean score")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("mean FICO score")
    np.atleast_1d(axes)[-1].legend(fontsize=8)
    return save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="plot FairLending-v0 group mean scores over time per threshold policy")
    p.add_argument("--out", type=Path, default=Path("fairness_dynamics.png"))
    p.add_argument("--loss", type=float, default=4.0)
    p.add_argument("--horizon", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(plot_mean_scores(a.out, env_kwargs={"loss": a.loss, "horizon": a.horizon}, seed=a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regret curves: step agents through one episode of a bandit's native batch and record regret at every pull.

:func:`deploy_envs.evaluation.evaluate` keeps only final-info means; the claims
about bandits are about how regret *grows* with ``t``, so :func:`regret_curves`
records the mean (over copies) cumulative pseudo-regret after every pull, and
:func:`run_regret_scenario` does this for every agent of a scenario file (e.g.
``scenarios/bandits_regret.yaml``), summarizes the growth with
:func:`deploy_envs.metrics.regret.growth_summary` and writes the plot.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_positive
from deploy_envs.metrics.regret import growth_summary

log = logging.getLogger(__name__)


@dataclass
class RegretCurve:
    """Cumulative pseudo-regret of one agent after each pull, over ``num_envs`` copies."""

    agent: str
    mean: np.ndarray
    """Mean over copies after pulls 1..T."""
    stderr: np.ndarray
    final: np.ndarray
    """Each copy's regret at T."""
    lai_robbins_constant: float | None = None
    """Mean over copies of ``C_LR`` (None for non-stationary bandits)."""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def t(self) -> np.ndarray:
        return np.arange(1, len(self.mean) + 1)

    def summary(self) -> dict[str, float]:
        out = growth_summary(self.t, self.mean, self.lai_robbins_constant) if len(self.mean) >= 100 else {"regret": float(self.mean[-1])}
        out["regret_stderr"] = float(self.stderr[-1])
        out.update(self.extra)
        return out


def regret_curves(
    env_id: str,
    agents: dict[str, Agent],
    *,
    num_envs: int = 64,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, RegretCurve]:
    """Run each agent for one episode (``horizon`` pulls) on ``num_envs`` copies seeded ``seed``; record regret curves.

    Every agent faces the same copies (same seed, hence the same means and reward
    noise for ``Bandit-v0``, the same inputs for ``ContextualBandit-v0``).
    """
    num_envs = check_positive("num_envs", num_envs, integer=True)
    curves: dict[str, RegretCurve] = {}
    for name, agent in agents.items():
        venv = gym.make_vec(env_id, num_envs=num_envs, **dict(env_kwargs or {}))
        core = venv.unwrapped.core
        horizon = int(core.horizon)
        regret = np.empty((horizon, num_envs))
        try:
            agent.setup(venv)
            obs, _ = venv.reset(seed=seed)
            start = np.ones(num_envs, dtype=bool)
            for t in range(horizon):
                obs, _, term, trunc, info = venv.step(agent.act(obs, start))
                regret[t] = info["pseudo_regret"]
                start = np.zeros(num_envs, dtype=bool)
            if not (term | trunc).all():
                raise RuntimeError(f"{env_id}: episodes did not end after horizon={horizon} pulls")
            lr = getattr(core, "lr_constant", None)
            stationary = getattr(core, "drift", 0.0) == 0 and lr is not None
            extra = {}
            if "optimal_pull_rate" in info:
                extra["optimal_pull_rate"] = float(np.mean(info["optimal_pull_rate"]))
            if "accuracy" in info:
                extra["accuracy"] = float(np.mean(info["accuracy"]))
                last = max(1, horizon // 10)
                extra["error_rate_last_tenth"] = float((regret[-1] - regret[-1 - last]).mean() / last) if horizon > last else float("nan")
            curves[name] = RegretCurve(
                agent=name,
                mean=regret.mean(1),
                stderr=regret.std(1, ddof=1) / np.sqrt(num_envs) if num_envs > 1 else np.zeros(horizon),
                final=regret[-1].copy(),
                lai_robbins_constant=float(np.mean(lr)) if stationary else None,
                extra=extra,
            )
            log.info("%s on %s: regret %.2f after %d pulls", name, env_id, curves[name].mean[-1], horizon)
        finally:
            venv.close()
    return curves


def run_regret_scenario(
    scenario: Any,
    *,
    num_envs: int | None = None,
    horizon: int | None = None,
    agents: list[str] | None = None,
    plot: str | Path | None = None,
) -> tuple[dict[str, RegretCurve], dict[str, dict[str, float]]]:
    """Regret curves of a scenario's agents (a :class:`~deploy_envs.scenarios.Scenario` or a YAML path).

    Uses the scenario's env, env kwargs (with each agent's own), seed, and
    ``protocol.episodes`` copies (or ``num_envs``); the horizon is the largest
    ``horizon`` of the sweep (or of ``env_kwargs``), unless given. Returns the curves
    and their growth summaries; writes the regret-curve plot to ``plot`` if given.
    """
    from deploy_envs.scenarios import build_agent, load_scenario

    scn = load_scenario(scenario) if isinstance(scenario, (str, Path)) else scenario
    kwargs = dict(scn.env_kwargs)
    if horizon is None and "horizon" in scn.sweep:
        horizon = max(int(h) for h in scn.sweep["horizon"])
    if horizon is not None:
        kwargs["horizon"] = check_positive("horizon", horizon, integer=True)
    n = num_envs or scn.protocol.episodes
    curves: dict[str, RegretCurve] = {}
    for name, spec in scn.agents.items():
        if agents and name not in agents:
            continue
        agent = build_agent(name, spec, scn.env)
        curves.update(regret_curves(scn.env, {name: agent}, num_envs=n, seed=scn.protocol.seed, env_kwargs={**kwargs, **spec.env_kwargs}))
    summaries = {name: c.summary() for name, c in curves.items()}
    if plot is not None:
        from deploy_envs.topics.bandits.plots import plot_regret_curves

        plot_regret_curves(curves, plot, title=f"{scn.name}: {scn.env.split('/')[-1]}, {n} runs")
    return curves, summaries


def plot_scenario_regret(path: str | Path, scenario: Any, num_envs: int | None = None) -> Path:
    """Scenario ``plots`` hook: write the regret curves of ``scenario``'s agents to ``path``."""
    run_regret_scenario(scenario, num_envs=num_envs, plot=path)
    return Path(path)

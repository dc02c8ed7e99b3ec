"""Reference banks for ``deploy_envs/FairLending-v0``: threshold policies.

Each policy's per-group thresholds are computed from the known score distributions
and repayment curves of the env's groups and its loss per default (never set by hand),
by exact search over the breakpoints of the piecewise-linear profit curves (bin edges,
or the selection rates / true-positive rates at bin edges), with the bin straddling a
threshold accepted in part (Hardt et al. 2016's randomization between two adjacent
thresholds):

| name | constraint | reference |
|---|---|---|
| ``max_profit`` | none: each group's own profit-maximizing threshold | Liu et al. 2018 (MaxUtil) |
| ``single_threshold`` | one threshold for all groups (race-blind) | Hardt et al. 2016 |
| ``demographic_parity`` | equal selection rates | Hardt et al. 2016; Liu et al. 2018 |
| ``equal_opportunity`` | equal true-positive rates | Hardt et al. 2016; Liu et al. 2018 |
| ``lend_to_all`` | threshold at the lowest score | - |

:func:`policy_thresholds` computes them; :func:`policy_table` gives, per policy, the
thresholds and the exact expected selection rate, TPR, profit and one-step mean-score
change of each group (Liu et al. 2018's table), and :func:`profit_fractions` the
fraction of max profit each policy keeps (Hardt et al. 2016, Section 6).
The agents set their thresholds once in :meth:`ThresholdAgent.setup` from
``env.unwrapped.core`` (its population, loss and groups) and play them every step.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.baselines import register_baseline
from deploy_envs.baselines.base import Agent
from deploy_envs.core.validation import check_choice, check_number
from deploy_envs.metrics.fairness import Outcomes, expected_outcomes

ENV_ID = "deploy_envs/FairLending-v0"
POLICIES = ("max_profit", "single_threshold", "demographic_parity", "equal_opportunity", "lend_to_all")


def _curves(population, loss: float) -> dict[str, np.ndarray]:
    """Per group, at each bin edge k (threshold = edges[k]): selection rate, TPR and profit per applicant."""
    pmf, rho = population.pmf, population.repay
    gain = pmf * (rho - loss * (1.0 - rho))

    def above(x):  # sum over bins >= k, for k = 0..B
        return np.concatenate([np.cumsum(x[:, ::-1], 1)[:, ::-1], np.zeros((len(x), 1))], 1)

    good = above(pmf * rho)
    return {"sel": above(pmf), "tpr": good / good[:, :1], "profit": above(gain)}


def _threshold_at(levels: np.ndarray, curve: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Thresholds where a group's decreasing ``curve`` (values at the edges) equals ``levels``."""
    # np.interp wants increasing x: walk the edges from the top down
    return np.interp(levels, curve[::-1], edges[::-1])


def _best_common_level(population, curves, key: str) -> np.ndarray:
    """Per-group thresholds equalizing ``curves[key]`` across groups at the most profitable level."""
    edges = population.edges
    levels = np.unique(np.clip(curves[key].ravel(), 0.0, 1.0))
    taus = np.stack([_threshold_at(levels, curves[key][g], edges) for g in range(curves[key].shape[0])], 1)
    profits = np.stack([np.interp(taus[:, g], edges, curves["profit"][g]) for g in range(taus.shape[1])], 1) @ population.shares
    return taus[int(np.argmax(profits))]


def policy_thresholds(population, loss: float, policy: str) -> np.ndarray:
    """Per-group thresholds (scores) of ``policy`` on ``population`` with ``loss`` per default."""
    check_choice("policy", policy, POLICIES)
    loss = check_number("loss", loss, low=0.0)
    edges = population.edges
    G = population.pmf.shape[0]
    if policy == "lend_to_all":
        return np.full(G, edges[0])
    c = _curves(population, loss)
    if policy == "max_profit":
        # ties go to the higher threshold (lend no more than profit asks)
        return edges[len(edges) - 1 - np.argmax(c["profit"][:, ::-1], 1)]
    if policy == "single_threshold":
        total = population.shares @ c["profit"]
        return np.full(G, edges[len(edges) - 1 - int(np.argmax(total[::-1]))])
    return _best_common_level(population, c, "sel" if policy == "demographic_parity" else "tpr")


def policy_table(population, loss: float, policies: tuple[str, ...] = POLICIES) -> list[dict[str, Any]]:
    """One row per policy and group: threshold and exact expected outcomes (Liu et al. 2018's one-step table)."""
    rows = []
    for p in policies:
        tau = policy_thresholds(population, loss, p)
        out: Outcomes = expected_outcomes(population, tau, loss)
        for g, name in enumerate(population.groups):
            rows.append({
                "policy": p, "group": name, "loss": loss, "threshold": float(tau[g]),
                "selection_rate": float(out.selection_rate[g]), "tpr": float(out.tpr[g]),
                "profit": float(out.profit[g]), "score_change": float(out.score_change[g]),
                "total_profit": out.total_profit,
            })
    return rows


def profit_fractions(population, loss: float) -> dict[str, float]:
    """Expected profit of each policy divided by that of ``max_profit`` (Hardt et al. 2016)."""
    best = expected_outcomes(population, policy_thresholds(population, loss, "max_profit"), loss).total_profit
    return {p: expected_outcomes(population, policy_thresholds(population, loss, p), loss).total_profit / best for p in POLICIES}


class ThresholdAgent(Agent):
    """Plays fixed per-group thresholds computed from the env's known distributions."""

    def __init__(self, policy: str = "max_profit") -> None:
        self.policy = check_choice("policy", policy, POLICIES)
        self.name = policy

    def setup(self, env: Any) -> None:
        core = getattr(env.unwrapped, "core", None)
        if core is None or not hasattr(core, "population") or not hasattr(core, "loss"):
            raise ValueError(f"env={env!r} is not a {ENV_ID} env: its unwrapped.core lacks population and loss")
        if core.action_mode != "threshold":
            raise ValueError(f"{self.policy!r} plays thresholds; make the env with action_mode='threshold' (got {core.action_mode!r})")
        self.thresholds = policy_thresholds(core.population, core.loss, self.policy)
        self.action = core.thresholds_to_action(self.thresholds)

    def act(self, obs, episode_start):
        return np.broadcast_to(self.action, (len(obs), len(self.action))).copy()


for _p in POLICIES:
    register_baseline(
        _p,
        lambda _p=_p: ThresholdAgent(_p),
        envs=(ENV_ID,),
        summary=f"lending thresholds per group: {_p.replace('_', ' ')}, computed from the known score distributions and the loss",
    )
from deploy_envs.baselines import delayed_impact as _delayed_impact  # noqa: E402,F401  (DelayedImpactLending-v0)

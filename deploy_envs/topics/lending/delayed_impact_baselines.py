"""Reference banks for ``deploy_envs/DelayedImpactLending-v0`` (ml-fairness-gym's DelayedImpact preset).

The library's lending experiments (D'Amour et al. 2020, "Fairness is Not Static") compare a
bank that maximizes reward with one that equalizes opportunity (true-positive rates) across
the two groups. Its agents estimate the repayment probability of each cluster from the
outcomes of the loans they make; these are *oracle* versions: every step they recompute the
per-group cluster thresholds from the current cluster distributions in the observation and
the known repayment probabilities and interest rate, by exact search over the breakpoints of
the piecewise-linear (in the randomized threshold) TPR / selection-rate and profit curves.

| name | thresholds |
|---|---|
| ``di_max_reward`` | each group lends to the clusters whose expected gain ``p r - (1 - p)`` is positive |
| ``di_equal_opportunity`` | most profitable pair of thresholds with equal expected TPRs |
| ``di_demographic_parity`` | most profitable pair of thresholds with equal expected selection rates |
| ``di_lend_to_all`` | every applicant |
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice

ENV_ID = "deploy_envs/DelayedImpactLending-v0"
POLICIES = ("max_reward", "equal_opportunity", "demographic_parity", "lend_to_all")


def di_curves(probs: np.ndarray, success: np.ndarray, interest_rate: float) -> dict[str, np.ndarray]:
    """Per group (rows of ``probs``), at integer thresholds k = 0..C: selection rate, TPR and profit per applicant of the group."""
    def above(x):
        return np.concatenate([np.cumsum(x[:, ::-1], 1)[:, ::-1], np.zeros((len(x), 1))], 1)

    good = above(probs * success)
    return {
        "sel": above(probs),
        "tpr": good / np.where(good[:, :1] > 0, good[:, :1], 1.0),
        "profit": above(probs * (success * interest_rate - (1.0 - success))),
    }


def di_thresholds(probs: np.ndarray, success: np.ndarray, interest_rate: float, policy: str, shares: np.ndarray) -> np.ndarray:
    """Per-group cluster thresholds in [0, C] of ``policy`` for cluster distributions ``probs`` (G, C)."""
    check_choice("policy", policy, POLICIES)
    G, C = probs.shape
    if policy == "lend_to_all":
        return np.zeros(G)
    if policy == "max_reward":
        gain = success * interest_rate - (1.0 - success)
        k = int(np.argmax(gain > 0)) if (gain > 0).any() else C
        return np.full(G, float(k))
    c = di_curves(probs, success, interest_rate)
    key = "tpr" if policy == "equal_opportunity" else "sel"
    ks = np.arange(C + 1, dtype=np.float64)
    levels = np.unique(np.clip(c[key].ravel(), 0.0, 1.0))
    # each curve decreases in the threshold: walk it from the top for np.interp
    taus = np.stack([np.interp(levels, c[key][g, ::-1], ks[::-1]) for g in range(G)], 1)
    profit = np.stack([np.interp(taus[:, g], ks, c["profit"][g]) for g in range(G)], 1) @ shares
    return taus[int(np.argmax(profit))]


class DelayedImpactAgent(Agent):
    """Recomputes per-group cluster thresholds every step from the observed cluster distributions."""

    def __init__(self, policy: str = "max_reward") -> None:
        self.policy = check_choice("policy", policy, POLICIES)
        self.name = f"di_{policy}"

    def setup(self, env: Any) -> None:
        core = getattr(env.unwrapped, "core", None)
        if core is None or not hasattr(core, "cluster_shift"):
            raise ValueError(f"env={env!r} is not a {ENV_ID} env: its unwrapped.core lacks cluster_shift")
        self.core = core
        self.slice = core.obs_slices["clusters"]
        self.shares = np.array([core.group_1_prob, 1.0 - core.group_1_prob])

    def act(self, obs, episode_start):
        core = self.core
        probs = np.asarray(obs, dtype=np.float64)[:, self.slice].reshape(len(obs), core.G, core.C)
        taus = np.stack([di_thresholds(p, core.success, core.interest_rate, self.policy, self.shares) for p in probs])
        return core.thresholds_to_action(taus)


for _p in POLICIES:
    register_baseline(
        f"di_{_p}",
        lambda _p=_p: DelayedImpactAgent(_p),
        envs=(ENV_ID,),
        summary=f"DelayedImpact lending, per-group cluster thresholds: {_p.replace('_', ' ')}, recomputed each step from the known cluster distributions",
    )

"""Regret of bandit algorithms: pseudo-regret, the Lai-Robbins lower bound, and growth checks.

* **Pseudo-regret** after ``T`` pulls of a stochastic K-armed bandit with means
  ``mu`` is ``sum_t (mu* - mu[a_t])`` (Bubeck & Cesa-Bianchi 2012, "Regret Analysis
  of Stochastic and Nonstochastic Multi-armed Bandit Problems", Sec. 1): the regret
  against always pulling the best arm with the reward noise averaged out.
* **Lai-Robbins lower bound** (Lai & Robbins 1985, "Asymptotically efficient
  adaptive allocation rules", Adv. Appl. Math. 6; Burnetas & Katehakis 1996 for the
  general form): every consistent policy has
  ``liminf_T E[R_T] / ln T >= sum_{i: mu_i < mu*} (mu* - mu_i) / KL(mu_i, mu*)``,
  with ``KL`` the Kullback-Leibler divergence between the reward distributions
  of arm ``i`` and of the best arm (Bernoulli: ``kl(p, q)``; Gaussian with known
  variance ``sigma^2``: ``(p - q)^2 / (2 sigma^2)``).
* **Growth checks**: logarithmic regret has a constant slope against ``ln t``
  (the same increment per decade of ``t``); linear regret's slope against ``ln t``
  grows in proportion to ``t`` (ten times larger per decade).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DISTRIBUTIONS = ("bernoulli", "gaussian")


def bernoulli_kl(p: np.ndarray | float, q: np.ndarray | float, eps: float = 1e-15) -> np.ndarray:
    """``KL(Bernoulli(p) || Bernoulli(q))`` elementwise, with ``p, q`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    q = np.clip(np.asarray(q, dtype=np.float64), eps, 1 - eps)
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def gaussian_kl(p: np.ndarray | float, q: np.ndarray | float, sigma: float = 1.0) -> np.ndarray:
    """``KL(N(p, sigma^2) || N(q, sigma^2)) = (p - q)^2 / (2 sigma^2)``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return (p - q) ** 2 / (2.0 * sigma**2)


def gaps(means: Sequence[float] | np.ndarray) -> np.ndarray:
    """``mu* - mu_i`` for each arm (last axis), zero for the best arms."""
    m = np.asarray(means, dtype=np.float64)
    return m.max(axis=-1, keepdims=True) - m


def pseudo_regret(means: Sequence[float] | np.ndarray, arms: Sequence[int] | np.ndarray) -> np.ndarray:
    """Cumulative pseudo-regret after each pull of ``arms`` in a bandit with fixed ``means``."""
    return np.cumsum(gaps(means)[np.asarray(arms, dtype=np.int64)])


def lai_robbins_constant(means: Sequence[float] | np.ndarray, distribution: str = "bernoulli", sigma: float = 1.0) -> np.ndarray:
    """``sum_{i suboptimal} Delta_i / KL(mu_i, mu*)`` over the last axis of ``means`` (Lai & Robbins 1985).

    Optimal arms (``Delta_i = 0``) contribute nothing. For Bernoulli arms with
    ``mu* = 1`` the divergence is infinite and the suboptimal arm contributes 0.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution={distribution!r} is not allowed; choose one of {', '.join(DISTRIBUTIONS)}")
    m = np.asarray(means, dtype=np.float64)
    best = m.max(axis=-1, keepdims=True)
    delta = best - m
    sub = delta > 1e-12
    if distribution == "bernoulli":
        kl = bernoulli_kl(m, np.broadcast_to(best, m.shape))
        infinite = np.broadcast_to(best >= 1.0, m.shape) & sub
    else:
        kl = gaussian_kl(m, np.broadcast_to(best, m.shape), sigma)
        infinite = np.zeros_like(sub)
    ratio = np.where(sub & ~infinite, delta / np.where(sub, kl, 1.0), 0.0)
    return ratio.sum(axis=-1)


def lai_robbins_bound(means: Sequence[float] | np.ndarray, t: np.ndarray | float, distribution: str = "bernoulli", sigma: float = 1.0) -> np.ndarray:
    """The asymptotic lower bound ``C_LR * ln t`` on the expected regret after ``t`` pulls."""
    return lai_robbins_constant(means, distribution, sigma) * np.log(np.maximum(np.asarray(t, dtype=np.float64), 1.0))


def log_slope(t: np.ndarray, regret: np.ndarray, lo: float, hi: float) -> tuple[float, float, float]:
    """Least-squares fit ``regret ~ a + b ln t`` over ``lo <= t <= hi``; return ``(b, a, r2)``."""
    t = np.asarray(t, dtype=np.float64)
    regret = np.asarray(regret, dtype=np.float64)
    sel = (t >= lo) & (t <= hi)
    if sel.sum() < 2:
        raise ValueError(f"log_slope needs at least two points with {lo} <= t <= {hi}; got {int(sel.sum())}")
    x, y = np.log(t[sel]), regret[sel]
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    ss = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / ss if ss > 0 else 1.0
    return float(b), float(a), float(r2)


def growth_summary(t: np.ndarray, regret: np.ndarray, lai_robbins_const: float | None = None) -> dict[str, float]:
    """How ``regret(t)`` grows over its last two decades of ``t`` (``T/100..T/10`` and ``T/10..T``).

    Returns the slopes against ``ln t`` over both decades and their ratio (about 1
    for logarithmic growth, about 10 for linear growth), the ratio
    ``R(T) / R(T/10)`` (at most ``ln T / ln(T/10)`` for logarithmic growth with a
    non-negative offset, about 10 for linear), and with ``lai_robbins_const`` the
    ratios of the last-decade slope and of ``R(T)`` to the Lai-Robbins constant and
    bound ``C_LR ln T``.
    """
    t = np.asarray(t, dtype=np.float64)
    regret = np.asarray(regret, dtype=np.float64)
    T = float(t[-1])
    if T < 100:
        raise ValueError(f"growth_summary needs a horizon of at least 100 pulls; got {T:g}")
    late, _, r2_late = log_slope(t, regret, T / 10, T)
    early, _, _ = log_slope(t, regret, T / 100, T / 10)
    at_tenth = float(np.interp(T / 10, t, regret))
    out = {
        "horizon": T,
        "regret": float(regret[-1]),
        "log_slope_last_decade": late,
        "log_slope_previous_decade": early,
        "slope_ratio": late / early if early > 0 else float("inf"),
        "log_fit_r2_last_decade": r2_late,
        "growth_ratio_10x": float(regret[-1]) / at_tenth if at_tenth > 0 else float("inf"),
    }
    if lai_robbins_const is not None and lai_robbins_const > 0:
        out["lai_robbins_constant"] = float(lai_robbins_const)
        out["lai_robbins_bound"] = float(lai_robbins_const * np.log(T))
        out["regret_over_lai_robbins"] = float(regret[-1]) / out["lai_robbins_bound"]
        out["slope_over_lai_robbins"] = late / float(lai_robbins_const)
    return out

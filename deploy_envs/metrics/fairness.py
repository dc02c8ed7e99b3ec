"""Fairness measures of lending decisions: what the auditor in ``FairLending-v0`` reports.

Two kinds of functions:

* **Empirical** (from decisions on applicants): :func:`group_rates` gives per-group
  selection rates and true-positive rates from counts, :func:`gap` the largest
  difference between groups (demographic-parity gap on selection rates, Dwork et al.
  2012; equal-opportunity gap on true-positive rates, Hardt et al. 2016). These match
  fairlearn's ``demographic_parity_difference`` and the ``difference()`` of a
  ``MetricFrame`` of ``true_positive_rate`` (checked in the tests).
* **Expected** (from known score distributions): :func:`acceptance` turns per-group
  thresholds into acceptance probabilities per score bin (randomizing in the bin the
  threshold falls in, as Hardt et al.'s post-processing randomizes between two adjacent
  thresholds), and :func:`expected_outcomes` gives per-group selection rate,
  true-positive rate, bank profit and Liu et al.'s (2018) one-step expected change of
  the group's mean score, Delta mu = sum_x pi(x) tau(x) [rho(x) d+(x) + (1 - rho(x)) d-(x)],
  with the score moving +75 on repayment and -150 on default, clipped to 300..850.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCORE_UP, SCORE_DOWN = 75.0, -150.0
"""Liu et al. 2018: score change of a borrower on repayment / on default."""


def safe_rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where ``den > 0``, else 0 (an undefined rate is reported as 0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def group_rates(applicants, accepted, positives, true_positives) -> tuple[np.ndarray, np.ndarray]:
    """Selection rate ``accepted / applicants`` and TPR ``true_positives / positives`` (0 where undefined)."""
    return safe_rate(accepted, applicants), safe_rate(true_positives, positives)


def gap(rates: np.ndarray, defined: np.ndarray | None = None) -> np.ndarray:
    """Largest minus smallest rate over the groups (last axis), over the groups where it is ``defined``."""
    rates = np.asarray(rates, dtype=np.float64)
    if defined is None:
        return rates.max(-1) - rates.min(-1)
    defined = np.asarray(defined, dtype=bool)
    hi = np.where(defined, rates, -np.inf).max(-1)
    lo = np.where(defined, rates, np.inf).min(-1)
    return np.where(defined.sum(-1) >= 2, hi - lo, 0.0)


def gap_info(step: dict[str, np.ndarray], cum: dict[str, np.ndarray], constraint: str | None = None,
             tolerance: float = 0.0) -> dict[str, np.ndarray]:
    """The fairness gaps of a lending step: ``dp_gap`` and ``eo_gap`` of the step's group counts ``step`` and
    ``cum_dp_gap`` and ``cum_eo_gap`` of the cumulative counts ``cum`` (each a dict of :func:`group_rates`'
    arguments), each over the groups where the rate is defined; with a ``constraint``
    (``"demographic_parity"`` or ``"equal_opportunity"``) also ``cost``, its step gap above ``tolerance``."""
    sel, tpr = group_rates(**step)
    csel, ctpr = group_rates(**cum)
    info = {
        "dp_gap": gap(sel, step["applicants"] > 0),
        "eo_gap": gap(tpr, step["positives"] > 0),
        "cum_dp_gap": gap(csel, cum["applicants"] > 0),
        "cum_eo_gap": gap(ctpr, cum["positives"] > 0),
    }
    if constraint is not None:
        key = "dp_gap" if constraint == "demographic_parity" else "eo_gap"
        info["cost"] = np.maximum(info[key] - tolerance, 0.0)
    return info


def acceptance(edges: np.ndarray, thresholds: np.ndarray, randomize: bool = True) -> np.ndarray:
    """Probability of accepting an applicant of each bin given per-group thresholds.

    ``thresholds`` has shape ``(..., G)`` (scores in ``[edges[0], edges[-1]]``); the
    result has shape ``(..., G, B)``. With ``randomize`` the bin containing the
    threshold is accepted with the fraction of it that lies above the threshold (score
    uniform within a bin), so the selection rate is continuous in the threshold;
    otherwise a bin is accepted when its centre is at or above the threshold.
    """
    t = np.asarray(thresholds, dtype=np.float64)[..., None]
    lo, hi = edges[:-1], edges[1:]
    if randomize:
        return np.clip((hi - t) / (hi - lo), 0.0, 1.0)
    return (0.5 * (lo + hi) >= t).astype(np.float64)


def score_moves(num_bins: int, bin_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Bin index after repayment and after default, for each bin (clipped to the score range)."""
    b = np.arange(num_bins)
    up = np.minimum(b + int(round(SCORE_UP / bin_width)), num_bins - 1)
    down = np.maximum(b + int(round(SCORE_DOWN / bin_width)), 0)
    return up, down


@dataclass(frozen=True)
class Outcomes:
    """Expected per-group results of a threshold policy (arrays of shape ``(G,)``)."""

    selection_rate: np.ndarray
    tpr: np.ndarray
    profit: np.ndarray
    """Expected profit per applicant of the group (+1 per repaid loan, -loss per default)."""
    score_change: np.ndarray
    """Liu et al.'s one-step expected change of the group's mean score."""
    total_profit: float
    """Profit per applicant over all groups, weighted by their shares."""

    @property
    def dp_gap(self) -> float:
        return float(gap(self.selection_rate))

    @property
    def eo_gap(self) -> float:
        return float(gap(self.tpr))


def expected_outcomes(population, thresholds, loss: float, randomize: bool = True) -> Outcomes:
    """Exact expected outcomes of per-group ``thresholds`` on ``population`` (a :class:`~deploy_envs.topics.lending.fico.Population`)."""
    pmf, rho, edges = population.pmf, population.repay, population.edges
    acc = acceptance(edges, thresholds, randomize)
    w = pmf * acc
    centers = 0.5 * (edges[:-1] + edges[1:])
    up, down = score_moves(pmf.shape[1], float(edges[1] - edges[0]))
    delta = rho * (centers[up] - centers) + (1.0 - rho) * (centers[down] - centers)
    profit = (w * (rho - loss * (1.0 - rho))).sum(1)
    return Outcomes(
        selection_rate=w.sum(1),
        tpr=(w * rho).sum(1) / (pmf * rho).sum(1),
        profit=profit,
        score_change=(w * delta).sum(1),
        total_profit=float(population.shares @ profit),
    )

"""Confidence intervals for every figure the suite reports.

One small module so every scorecard, scenario result and card states its uncertainty the
same way:

- :func:`bootstrap_ci`: percentile bootstrap of the mean over independent units (episodes,
  probe sets, seeds), with a seeded RNG so the same data give the same interval. It uses
  :func:`scipy.stats.bootstrap` (percentile method) when the sample varies.
- :func:`wilson_ci`: the Wilson score interval for a rate from 0/1 outcomes (better coverage
  than the bootstrap near 0 and 1, where a bootstrap of an all-ones sample collapses to a point).
- :func:`clopper_pearson_ci`: the exact (conservative) binomial interval.
- :func:`interval`: picks Wilson for 0/1 samples and the bootstrap otherwise, and returns an
  :class:`Interval` (mean, low, high, n, method) that serializes to a small dict.

Seeds are fixed (``seed=0``) by default: the interval of a results file is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

#: confidence level of every interval the suite reports
LEVEL = 0.95
#: bootstrap resamples (percentile method)
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval over ``n`` independent units, and how it was computed."""

    mean: float
    low: float
    high: float
    n: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Interval":
        return cls(float(d["mean"]), float(d["low"]), float(d["high"]), int(d["n"]), str(d["method"]))

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3) -> str:
        """``4.67 [4.60, 4.74]``: the mean and its interval with ``digits`` significant figures."""
        f = lambda v: f"{v:.{digits}g}"  # noqa: E731
        if self.low == self.high == self.mean:
            return f(self.mean)
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


def _values(values: Iterable[float], name: str = "values") -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError(f"{name} is empty; an interval needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite values; an interval needs finite values")
    return x


def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level={level!r} must be a number strictly between 0 and 1")
    return float(level)


def bootstrap_ci(values: Sequence[float], *, level: float = LEVEL, seed: int = 0, resamples: int = RESAMPLES) -> Interval:
    """Percentile-bootstrap interval of the mean of ``values`` (one value per independent unit).

    A constant sample (or one value) gives the degenerate interval [mean, mean]; say so by
    reporting n alongside it.
    """
    x = _values(values)
    level = _check_level(level)
    if not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples={resamples!r} must be an integer >= 100")
    mean = float(x.mean())
    if x.size == 1 or np.ptp(x) == 0:
        return Interval(mean, mean, mean, int(x.size), "bootstrap")
    from scipy.stats import bootstrap

    res = bootstrap((x,), np.mean, confidence_level=level, n_resamples=resamples, method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Interval(mean, min(lo, mean), max(hi, mean), int(x.size), "bootstrap")


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _check_rate(successes: int, n: int, level: float) -> float:
    """Check a rate's counts (``n >= 1`` trials, ``0 <= successes <= n``); returns the checked level."""
    level = _check_level(level)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1")
    if not isinstance(successes, (int, np.integer)) or not 0 <= successes <= n:
        raise ValueError(f"successes={successes!r} must be an integer in [0, n={n}]")
    return level


def wilson_ci(successes: int, n: int, *, level: float = LEVEL) -> Interval:
    """Wilson score interval of a rate: ``successes`` out of ``n`` trials."""
    level = _check_rate(successes, n, level)
    z = _z(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), int(n), "wilson")


def clopper_pearson_ci(successes: int, n: int, *, level: float = LEVEL) -> Interval:
    """Exact (Clopper-Pearson) interval of a rate: ``successes`` out of ``n`` trials."""
    level = _check_rate(successes, n, level)
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if successes == 0 else float(beta.ppf(a, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(beta.ppf(1 - a, successes + 1, n - successes))
    return Interval(successes / n, lo, hi, int(n), "clopper-pearson")


def is_binary(values: Sequence[float]) -> bool:
    x = np.asarray(values, dtype=float)
    return x.size > 0 and bool(np.all((x == 0) | (x == 1)))


def interval(values: Sequence[float], *, level: float = LEVEL, seed: int = 0) -> Interval:
    """The suite's default interval: Wilson for 0/1 outcomes, the bootstrap of the mean otherwise."""
    x = _values(values)
    if is_binary(x):
        return wilson_ci(int(x.sum()), int(x.size), level=level)
    return bootstrap_ci(x, level=level, seed=seed)


def intervals(records: Sequence[dict[str, float]], *, level: float = LEVEL, seed: int = 0) -> dict[str, Interval]:
    """One :class:`Interval` per metric over per-unit records (dicts of metric -> value)."""
    keys: dict[str, list[float]] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v)):
                keys.setdefault(k, []).append(float(v))
    return {k: interval(v, level=level, seed=seed) for k, v in keys.items()}


def clear_of(a: Interval, b: Interval) -> bool:
    """True when ``a``'s interval lies wholly above ``b``'s (a beats b with the intervals clear)."""
    return a.low > b.high


def stratified_bootstrap_ci(groups: Sequence[Sequence[float]], *, level: float = LEVEL, seed: int = 0, resamples: int = RESAMPLES) -> Interval:
    """Interval of the mean of the groups' means, resampling within each group (equal-weight strata).

    Used where the env draws a condition with equal probability (the supervisor present or
    absent) and the scenario runs each condition on its own: the figure is the exact mix, and
    its interval reflects only the episodes' noise within each condition. n is all episodes.
    """
    xs = [_values(g, f"groups[{i}]") for i, g in enumerate(groups)]
    if len(xs) < 1:
        raise ValueError("groups is empty; a stratified interval needs at least one group")
    level = _check_level(level)
    mean = float(np.mean([x.mean() for x in xs]))
    n = int(sum(x.size for x in xs))
    if all(x.size == 1 or np.ptp(x) == 0 for x in xs):
        return Interval(mean, mean, mean, n, "stratified bootstrap")
    rng = np.random.default_rng(seed)
    stats = np.zeros(resamples)
    for x in xs:
        idx = rng.integers(0, x.size, size=(resamples, x.size))
        stats += x[idx].mean(axis=1)
    stats /= len(xs)
    a = (1 - level) / 2
    lo, hi = (float(v) for v in np.quantile(stats, [a, 1 - a]))
    return Interval(mean, min(lo, mean), max(hi, mean), n, "stratified bootstrap")


def draws_ci(draw_means: Sequence[float], *, level: float = LEVEL, seed: int = 0) -> Interval:
    """Interval of a figure over independent draws of a condition (probe sets, seeds): the
    bootstrap over the draws' means, n = number of draws."""
    iv = bootstrap_ci(draw_means, level=level, seed=seed)
    return Interval(iv.mean, iv.low, iv.high, iv.n, "bootstrap over draws")

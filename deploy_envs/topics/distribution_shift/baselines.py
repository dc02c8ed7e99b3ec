"""Reference operators of ``DistributionShift-v0``, batched over copies with numpy.

All read the observation only (the batch's confidence summary and predicted-class
histogram) plus what an operator has before deployment: the labelled validation half
of the test split (``core.val_confidence``, ``core.confusion``). Per-copy state is
cleared when ``episode_start`` says a copy began a new episode. Action = ``(defer, alarm, adapt)``.

* ``always_serve``: serve everything, never alarm, never adapt.
* ``max_softmax``: selective prediction with the maximum softmax probability as the
  confidence score (Hendrycks & Gimpel 2017, "A Baseline for Detecting Misclassified
  and Out-of-Distribution Examples in Neural Networks", ICLR; the selective classifier
  of Geifman & El-Yaniv 2017): defer a fixed fraction ``1 - coverage`` of the least
  confident inputs, or with ``threshold=tau`` the (largest offered) fraction of the batch
  whose max-softmax is below ``tau``, read off the observed quantiles.
* ``cusum``: one-sided CUSUM (Page 1954) for a drop of the batch mean confidence
  below its validation mean ``mu0``, in units of the standard error ``sigma0`` of a batch
  mean: ``S = max(0, S + (mu0 - x) / sigma0 - k)``; alarm (and restart) when ``S > h``.
  With ``finetune=True`` each alarm also asks for a fine-tuning of the model's last layer
  on labelled inputs of the current stream (``adapt=2``): detect, then adapt.
* ``page_hinkley``: the Page-Hinkley test (Page 1954; Hinkley 1971) for a drop in the
  mean, with no reference: ``U_T = sum_t (x_t - mean_T + delta)`` against its running
  maximum, alarm (and restart) when ``max U - U_T > lambda``; ``delta`` and ``lambda``
  in units of ``sigma0``.
* ``bbse``: black-box shift detection and correction (Lipton, Wang & Smola 2018):
  compares the predicted-class histogram of the last ``window`` batches with the
  validation one by a chi-square test (``alpha``); on rejection it raises the alarm and
  asks the env for BBSE prior recalibration (``adapt=1``), which solves ``C^T w = mu_hat``.
  The agent keeps its own estimate ``weights`` (same solver, :func:`~deploy_envs.topics.distribution_shift.bbse.bbse_weights`).

Each detector also takes ``coverage`` (default 1: serve everything) to combine
detection with max-softmax deferral.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive, check_probability

SHIFT_ENV = "deploy_envs/DistributionShift-v0"


def _shift_core(env: Any):
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    if core is None or "mean_confidence" not in getattr(core, "obs_slices", {}):
        raise ValueError(f"env={env!r} is not a DistributionShift-v0 env (no mean_confidence in its observation)")
    return core


class ShiftAgent(Agent):
    """Base: reads the core's layout and turns a coverage into a defer level."""

    name = "shift_agent"

    def __init__(self, coverage: float = 1.0) -> None:
        self.coverage = check_probability("coverage", coverage)

    def setup(self, env: Any) -> None:
        self.core = core = _shift_core(env)
        self.s = core.obs_slices
        fr = np.asarray(core.defer_fractions)
        hit = np.flatnonzero(np.isclose(fr, 1.0 - self.coverage))
        if len(hit) == 0:
            allowed = ", ".join(f"{1 - f:g}" for f in fr)
            raise ValueError(f"coverage={self.coverage!r} is not offered by the env; allowed: {allowed} (1 - defer_fractions)")
        self.defer_level = int(hit[0])
        B = core.batch_size
        self.mu0 = float(core.val_confidence.mean())
        self.sigma0 = float(core.val_confidence.std() / np.sqrt(B)) or 1e-3

    def _actions(self, n: int) -> np.ndarray:
        a = np.zeros((n, 3), np.int64)
        a[:, 0] = self.defer_level
        return a

    def act(self, obs, episode_start):
        return self._actions(len(obs))


class AlwaysServe(ShiftAgent):
    name = "always_serve"

    def __init__(self) -> None:
        super().__init__(coverage=1.0)


class MaxSoftmax(ShiftAgent):
    name = "max_softmax"

    def __init__(self, coverage: float | None = 0.8, threshold: float | None = None) -> None:
        if threshold is not None:
            self.threshold = check_probability("threshold", threshold)
            coverage = 1.0
        else:
            self.threshold = None
        super().__init__(coverage=1.0 if coverage is None else coverage)

    def act(self, obs, episode_start):
        a = self._actions(len(obs))
        if self.threshold is None:
            return a
        q = obs[:, self.s["confidence_quantiles"]]  # sorted quantiles at 0, 0.1, ..., 1
        levels = np.linspace(0.0, 1.0, q.shape[1])
        below = np.array([np.interp(self.threshold, row, levels) if row[0] < self.threshold else 0.0 for row in q])
        below[q[:, -1] < self.threshold] = 1.0
        fr = np.asarray(self.core.defer_fractions)
        a[:, 0] = np.searchsorted(fr, below, side="right") - 1  # largest offered fraction <= the share below tau
        return a


class Cusum(ShiftAgent):
    name = "cusum"

    def __init__(self, k: float = 0.5, h: float = 8.0, coverage: float = 1.0, finetune: bool = False) -> None:
        super().__init__(coverage)
        self.k = check_number("k", k, low=0.0)
        self.h = check_positive("h", h)
        if not isinstance(finetune, bool):
            raise ValueError(f"finetune={finetune!r} must be True or False")
        self.finetune = finetune

    def setup(self, env):
        super().setup(env)
        self.S = None

    def act(self, obs, episode_start):
        n = len(obs)
        if self.S is None or len(self.S) != n:
            self.S = np.zeros(n)
        self.S[episode_start] = 0.0
        x = obs[:, self.s["mean_confidence"]][:, 0]
        self.S = np.maximum(0.0, self.S + (self.mu0 - x) / self.sigma0 - self.k)
        alarm = self.S > self.h
        self.S[alarm] = 0.0
        a = self._actions(n)
        a[:, 1] = alarm
        if self.finetune:
            a[alarm, 2] = 2  # fine-tune the last layer on labelled inputs of the current stream
        return a


class PageHinkley(ShiftAgent):
    name = "page_hinkley"

    def __init__(self, delta: float = 0.5, threshold: float = 10.0, coverage: float = 1.0) -> None:
        super().__init__(coverage)
        self.delta = check_number("delta", delta, low=0.0)
        self.threshold = check_positive("threshold", threshold)

    def setup(self, env):
        super().setup(env)
        self.count = None

    def _restart(self, m: np.ndarray) -> None:
        self.count[m] = 0
        self.total[m] = 0.0
        self.U[m] = 0.0
        self.U_max[m] = 0.0

    def act(self, obs, episode_start):
        n = len(obs)
        if self.count is None or len(self.count) != n:
            self.count, self.total, self.U, self.U_max = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        self._restart(episode_start)
        x = obs[:, self.s["mean_confidence"]][:, 0] / self.sigma0
        self.count += 1
        self.total += x
        mean = self.total / self.count
        self.U += x - mean + self.delta
        self.U_max = np.maximum(self.U_max, self.U)
        alarm = (self.U_max - self.U) > self.threshold
        self._restart(alarm)
        a = self._actions(n)
        a[:, 1] = alarm
        return a


class BBSE(ShiftAgent):
    name = "bbse"

    def __init__(self, window: int = 10, alpha: float = 0.001, coverage: float = 1.0) -> None:
        super().__init__(coverage)
        self.window = check_positive("window", window, integer=True)
        self.alpha = check_number("alpha", alpha, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)

    def setup(self, env):
        super().setup(env)
        from scipy.stats import chi2

        from deploy_envs.topics.distribution_shift.bbse import bbse_weights

        self._solve = bbse_weights
        C = self.core.confusion
        self.q = np.maximum(C.sum(0), 1e-3)  # predicted-class distribution on the validation split
        self.q /= self.q.sum()
        self.crit = float(chi2.ppf(1.0 - self.alpha, C.shape[0] - 1))
        self.hist = None

    def act(self, obs, episode_start):
        n = len(obs)
        K = self.core.K
        if self.hist is None or len(self.hist) != n:
            self.hist = np.zeros((n, self.window, K))
            self.filled = np.zeros(n, np.int64)
            self.alarmed = np.zeros(n, bool)
            self.weights = np.ones((n, K))
        self.hist[episode_start] = 0.0
        self.filled[episode_start] = 0
        self.alarmed[episode_start] = False
        self.weights[episode_start] = 1.0
        self.hist = np.roll(self.hist, 1, axis=1)
        self.hist[:, 0] = obs[:, self.s["predicted_histogram"]]
        self.filled = np.minimum(self.filled + 1, self.window)
        mu = self.hist.sum(1) / self.filled[:, None]
        m = self.filled * self.core.batch_size
        stat = m * (((mu - self.q) ** 2) / self.q).sum(1)
        self.weights = self._solve(self.core.confusion, mu)
        alarm = (stat > self.crit) & (self.filled >= self.window) & ~self.alarmed
        self.alarmed |= alarm
        a = self._actions(n)
        a[:, 1] = alarm
        a[:, 2] = np.where(alarm, 1, 0)
        return a


register_baseline("always_serve", AlwaysServe, envs=(SHIFT_ENV,), summary="serve every prediction; no alarm, no adaptation")
register_baseline("max_softmax", MaxSoftmax, envs=(SHIFT_ENV,), summary="defer the least confident inputs by max-softmax (Hendrycks & Gimpel 2017): fixed coverage or threshold")
register_baseline("cusum", Cusum, envs=(SHIFT_ENV,), summary="CUSUM on the batch mean confidence against its validation mean; alarm on a drop (finetune=True: fine-tune the last layer on each alarm)")
register_baseline("page_hinkley", PageHinkley, envs=(SHIFT_ENV,), summary="Page-Hinkley test on the batch mean confidence; alarm on a drop")
register_baseline("bbse", BBSE, envs=(SHIFT_ENV,), summary="chi-square test of the predicted-class histogram; on alarm, BBSE prior recalibration (Lipton et al. 2018)")

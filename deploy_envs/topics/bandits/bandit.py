"""``deploy_envs/Bandit-v0``: the stochastic K-armed bandit (Bernoulli or Gaussian, optionally drifting)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.core.spaces import flat_box
from deploy_envs.metrics.regret import DISTRIBUTIONS, lai_robbins_constant

DEFAULT_MEANS = (0.5, 0.7, 0.3, 0.9, 0.1)
"""Default arm means: five arms, best arm 3 (0.9), gaps 0.2, 0.4, 0.6, 0.8; Lai-Robbins constant 3.12 (Bernoulli).

Gaps this wide put UCB1 in its logarithmic regime within 10^4 pulls (with a 0.1 gap
its exploration alone, about ``2 ln t / 0.01`` pulls, exceeds ``t`` until a few thousand)."""
RANDOM_MEANS = "random"
CHUNK = 128
"""Pulls of noise each copy draws from its own generator at a time (one Python call per copy per chunk)."""
GAUSSIAN_RANDOM_CLIP = 3.0
NOISE_BOUND = 10.0
"""Observed Gaussian rewards are clipped to ``mean_bound + NOISE_BOUND * sigma`` so the observation box holds (a 10-sigma event)."""


def check_means(means: Any, distribution: str, arms: int | None) -> tuple[float, ...] | str:
    """Validate the ``means`` argument: a sequence of at least two finite numbers, in [0, 1] for Bernoulli."""
    if isinstance(means, str):
        check_choice("means", means, (RANDOM_MEANS,))
        return RANDOM_MEANS
    try:
        values = tuple(float(m) for m in means)
    except (TypeError, ValueError):
        raise ValueError(f"means={means!r} must be a sequence of at least two numbers or {RANDOM_MEANS!r}") from None
    if len(values) < 2:
        raise ValueError(f"means={means!r} gives {len(values)} arm(s); a bandit needs at least two arms")
    if not all(np.isfinite(values)):
        raise ValueError(f"means={means!r} must be finite numbers")
    if distribution == "bernoulli" and (min(values) < 0.0 or max(values) > 1.0):
        raise ValueError(f"means={means!r} must lie in [0, 1] for distribution='bernoulli' (they are success probabilities)")
    if arms is not None and arms != len(values):
        raise ValueError(f"arms={arms!r} disagrees with means={means!r} ({len(values)} arms); give one or the other")
    return values


class BanditCore(BatchedCore):
    """## Description

    The stochastic K-armed bandit (Robbins 1952; Lattimore & Szepesvari 2020,
    "Bandit Algorithms", ch. 4): each step the agent pulls one of ``K`` arms and
    receives a reward drawn from that arm's distribution, Bernoulli(``mu_a``) or
    Gaussian N(``mu_a``, ``sigma^2``). The means are hidden; the agent must explore
    to find the best arm and exploit it. An episode is ``horizon`` pulls. The
    measure is the pseudo-regret ``sum_t (mu* - mu[a_t])`` against always pulling
    the best arm; good algorithms (UCB1, KL-UCB, Thompson sampling) make it grow
    like ``ln T``, the rate of the Lai & Robbins (1985) lower bound, while a fixed
    exploration rate makes it grow linearly.

    With ``drift > 0`` the bandit is non-stationary: after every pull each arm's
    mean moves by an independent Gaussian step of standard deviation ``drift``
    (clipped to the allowed range; the "restless" bandit of Whittle 1988 and the
    drifting setting of Garivier & Moulines 2011), and regret is measured against
    the best arm *at each step*.

    ## Action Space

    ``Discrete(K)``: the arm to pull.

    ## Observation Space

    The history's sufficient statistics, so a memoryless policy (an SB3 MLP) can
    learn to explore. A flat float32 ``Box`` (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``last_arm`` | K | {0, 1} | one-hot of the previous pull (zeros at the start) |
    | ``last_reward`` | 1 | [r_lo, r_hi] | reward of the previous pull (0 at the start) |
    | ``counts`` | K | [0, 1] | pulls of each arm so far / ``horizon`` |
    | ``mean_reward`` | K | [r_lo, r_hi] | empirical mean reward of each arm (0 if never pulled) |
    | ``time`` | 1 | [0, 1] | pulls so far / ``horizon`` |

    ``[r_lo, r_hi]`` is ``[0, 1]`` for Bernoulli arms and ``+-(m + 10 sigma)`` for
    Gaussian arms, with ``m`` the largest absolute mean allowed (``max(1, max|mu|)``;
    3 for random means); observed Gaussian rewards are clipped to it (a 10-sigma
    event), rewards returned by ``step`` are not. The reference agents keep their own
    statistics from ``last_arm`` and ``last_reward``.

    ## Rewards

    The arm's random reward: 0/1 (Bernoulli) or ``mu_a + sigma * N(0, 1)`` (Gaussian).
    Copy ``i`` draws its noise from its own generator in blocks, one number per
    pull (and ``K`` for the drift), independent of the arm pulled, so two agents
    seeded alike face the same noise (common random numbers).

    ## Starting State

    No pull yet (zero observation). With ``means="random"`` every episode draws new
    means for each copy: uniform in [0, 1] (Bernoulli) or N(0, 1) clipped to +-3
    (Gaussian, the testbed of Sutton & Barto 2018, sec. 2.3).

    ## Episode End

    Terminates after ``horizon`` pulls (time is part of the observation).

    ## Info

    ``arm`` (pulled), ``optimal_arm`` (best arm at this pull), ``step_pseudo_regret``
    (``mu* - mu_a`` of this pull), ``pseudo_regret`` (cumulative over the episode),
    ``optimal_pull_rate`` (fraction of pulls so far on an optimal arm) and, when
    stationary (``drift == 0``), ``lai_robbins_bound`` (``C_LR ln t`` with
    ``C_LR = sum Delta_i / KL(mu_i, mu*)`` of this copy's means, see
    :mod:`deploy_envs.metrics.regret`). These are for the evaluator: they reveal the
    best arm, so an agent must not read them. The reset info has ``optimal_arm``
    and ``pseudo_regret`` (0).

    ## Arguments

    * ``means``: the arm means (a sequence of at least two numbers; in [0, 1] for
      Bernoulli), ``"random"`` (new means per episode), or ``None`` for the default
      ``DEFAULT_MEANS = (0.5, 0.7, 0.3, 0.9, 0.1)`` (best arm 3).
    * ``arms``: number of arms with ``means="random"`` (default 5); with explicit means it must match.
    * ``distribution``: ``"bernoulli"`` (default) or ``"gaussian"``; ``sigma``: Gaussian noise std (default 1).
    * ``horizon``: pulls per episode (default 1000).
    * ``drift``: std of each mean's random-walk step per pull (default 0: stationary).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        means: Sequence[float] | str | None = None,
        arms: int | None = None,
        distribution: str = "bernoulli",
        sigma: float = 1.0,
        horizon: int = 1000,
        drift: float = 0.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.distribution = check_choice("distribution", distribution, DISTRIBUTIONS)
        self.sigma = check_positive("sigma", sigma)
        self.horizon = check_positive("horizon", horizon, integer=True)
        self.drift = check_number("drift", drift, low=0.0)
        if arms is not None:
            arms = check_number("arms", arms, low=2, integer=True)
        if means is None:
            if arms not in (None, len(DEFAULT_MEANS)):
                raise ValueError(f"arms={arms!r} needs means: give a sequence of {arms} means or means='random' (the default means have {len(DEFAULT_MEANS)} arms)")
            means = DEFAULT_MEANS
        checked = check_means(means, self.distribution, arms)
        self.random_means = checked == RANDOM_MEANS
        self.fixed_means = None if self.random_means else np.asarray(checked, dtype=np.float64)
        K = self.arms = (arms or 5) if self.random_means else len(checked)
        if self.distribution == "bernoulli":
            self.mean_low, self.mean_high = 0.0, 1.0
            r_lo, r_hi = 0.0, 1.0
        else:
            m = GAUSSIAN_RANDOM_CLIP if self.random_means else max(1.0, float(np.abs(self.fixed_means).max()))
            self.mean_low, self.mean_high = -m, m
            r_hi = m + NOISE_BOUND * self.sigma
            r_lo = -r_hi
        self.reward_low, self.reward_high = r_lo, r_hi

        parts = [("last_arm", K, 0.0, 1.0), ("last_reward", 1, r_lo, r_hi), ("counts", K, 0.0, 1.0), ("mean_reward", K, r_lo, r_hi), ("time", 1, 0.0, 1.0)]
        self.single_observation_space, self.obs_slices = flat_box(parts)
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Discrete(K)

        n = self.num_envs
        self.means = np.zeros((n, K))
        if self.fixed_means is not None:
            self.means[:] = self.fixed_means
        self.counts = np.zeros((n, K), np.int64)
        self.sums = np.zeros((n, K))
        self.t = np.zeros(n, np.int64)
        self.regret = np.zeros(n)
        self.optimal_pulls = np.zeros(n, np.int64)
        self.last_arm = np.full(n, -1, np.int64)
        self.last_reward = np.zeros(n)
        self.lr_constant = np.zeros(n)
        self._noise = np.zeros((n, CHUNK))
        self._drift_noise = np.zeros((n, CHUNK, K)) if self.drift > 0 else None
        self._ptr = np.full(n, CHUNK, np.int64)
        self._eye = np.eye(K, dtype=np.float32)

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        for i in idx:
            if self.random_means:
                rng = self.rngs[i]
                if self.distribution == "bernoulli":
                    self.means[i] = rng.random(self.arms)
                else:
                    self.means[i] = np.clip(rng.standard_normal(self.arms), -GAUSSIAN_RANDOM_CLIP, GAUSSIAN_RANDOM_CLIP)
        if self.fixed_means is not None:
            self.means[idx] = self.fixed_means
        self.counts[idx] = 0
        self.sums[idx] = 0.0
        self.t[idx] = 0
        self.regret[idx] = 0.0
        self.optimal_pulls[idx] = 0
        self.last_arm[idx] = -1
        self.last_reward[idx] = 0.0
        self._ptr[idx] = CHUNK  # fresh noise from the generator at the first pull
        if self.drift == 0:
            self.lr_constant[idx] = lai_robbins_constant(self.means[idx], self.distribution, self.sigma)
        obs = np.zeros((len(idx), self.obs_dim), np.float32)
        info = {"optimal_arm": self.means[idx].argmax(1), "pseudo_regret": np.zeros(len(idx))}
        return obs, info

    # ------------------------------------------------------------------ step
    def _draw(self, idx) -> tuple[np.ndarray, np.ndarray | None]:
        """This pull's noise for copies ``idx`` (refilling a copy's block from its own generator when spent)."""
        ptr = self._ptr[idx]
        for i in idx[ptr >= CHUNK]:
            rng = self.rngs[i]
            self._noise[i] = rng.random(CHUNK) if self.distribution == "bernoulli" else rng.standard_normal(CHUNK)
            if self._drift_noise is not None:
                self._drift_noise[i] = rng.standard_normal((CHUNK, self.arms))
            self._ptr[i] = 0
        ptr = self._ptr[idx]
        self._ptr[idx] = ptr + 1
        noise = self._noise[idx, ptr]
        drift = None if self._drift_noise is None else self._drift_noise[idx, ptr]
        return noise, drift

    def step_indices(self, idx, actions):
        k = len(idx)
        rows = np.arange(k)
        noise, drift_noise = self._draw(idx)
        mu = self.means[idx]
        mu_a = mu[rows, actions]
        best = mu.max(1)
        if self.distribution == "bernoulli":
            reward = (noise < mu_a).astype(np.float64)
        else:
            reward = mu_a + self.sigma * noise
        gap = best - mu_a
        optimal = gap <= 1e-12
        self.regret[idx] += gap
        self.optimal_pulls[idx] += optimal
        self.counts[idx, actions] += 1
        self.sums[idx, actions] += reward
        t = self.t[idx] + 1
        self.t[idx] = t
        self.last_arm[idx] = actions
        self.last_reward[idx] = reward
        info = {
            "arm": actions.copy(),
            "optimal_arm": mu.argmax(1),
            "step_pseudo_regret": gap,
            "pseudo_regret": self.regret[idx],
            "optimal_pull_rate": self.optimal_pulls[idx] / t,
        }
        if self.drift == 0:
            info["lai_robbins_bound"] = self.lr_constant[idx] * np.log(t)
        else:
            self.means[idx] = np.clip(mu + self.drift * drift_noise, self.mean_low, self.mean_high)
        obs = self._observe(idx, actions, reward, t)
        terminated = t >= self.horizon
        return obs, reward, terminated, np.zeros(k, bool), info

    def _observe(self, idx, actions, reward, t) -> np.ndarray:
        s = self.obs_slices
        counts = self.counts[idx]
        obs = np.empty((len(idx), self.obs_dim), np.float32)
        obs[:, s["last_arm"]] = self._eye[actions]
        obs[:, s["last_reward"]] = np.clip(reward, self.reward_low, self.reward_high)[:, None]
        obs[:, s["counts"]] = counts / self.horizon
        mean = self.sums[idx] / np.maximum(counts, 1)
        obs[:, s["mean_reward"]] = np.clip(mean, self.reward_low, self.reward_high)
        obs[:, s["time"]] = (t / self.horizon)[:, None]
        return obs

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        counts = " ".join(f"{c:d}" for c in self.counts[i])
        means = " ".join(f"{m:.2f}" for m in self.means[i])
        return (
            f"t={self.t[i]}/{self.horizon} last arm={self.last_arm[i]} reward={self.last_reward[i]:.3g} "
            f"pseudo-regret={self.regret[i]:.2f} | pulls [{counts}] | means [{means}]"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """Each arm's empirical mean (bar, with its pull count) against its true mean (marker); the last pull in orange."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(480, 300))
        (ax,) = sk.begin(f"Bandit: pull {self.t[i]}/{self.horizon}, pseudo-regret {self.regret[i]:.2f}")
        K = self.arms
        counts = self.counts[i]
        est = self.sums[i] / np.maximum(counts, 1)
        colours = [PALETTE["orange"] if a == self.last_arm[i] else PALETTE["blue"] for a in range(K)]
        ax.bar(np.arange(K), np.where(counts > 0, est, 0.0), color=colours, alpha=0.8, label="estimate")
        ax.scatter(np.arange(K), self.means[i], marker="_", s=400, color=PALETTE["black"], zorder=3, label="true mean")
        for a in range(K):
            ax.annotate(f"n={counts[a]}", (a, 0), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
        ax.set_xticks(np.arange(K))
        ax.set_xlabel("arm", fontsize=8)
        ax.set_ylabel("mean reward", fontsize=8)
        ax.set_ylim(min(self.mean_low, float(est.min()), 0.0), max(self.mean_high, float(est.max())) * 1.05)
        ax.legend(fontsize=7, loc="upper right")
        ax.tick_params(labelsize=7)
        return sk.finish()

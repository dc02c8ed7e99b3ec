"""Reference agents of ``Bandit-v0`` and ``ContextualBandit-v0``, batched over copies with numpy.

Every agent keeps per-copy statistics (pull counts, reward sums, or LinUCB's
per-arm ridge regressions) as arrays with a leading batch dimension, updates them
from the observation's ``last_arm``/``last_reward`` feedback, and clears a copy's
statistics when ``episode_start`` says it began a new episode. The index-based
agents ignore the context, so they run on both envs (on the contextual bandit they
are the context-free yardstick).

* ``epsilon_greedy``: pull a uniformly random arm with probability ``epsilon``,
  else the arm with the best empirical mean (Sutton & Barto 2018, sec. 2.2); with
  ``decay=c`` the rate is ``min(1, c K / t)`` (the epsilon_n-greedy of Auer,
  Cesa-Bianchi & Fischer 2002).
* ``ucb1``: ``mean + sqrt(2 ln t / n)`` (Auer, Cesa-Bianchi & Fischer 2002,
  "Finite-time Analysis of the Multiarmed Bandit Problem", Mach. Learn. 47); for
  Gaussian arms the bonus is scaled by ``sigma`` (the sub-Gaussian UCB of
  Lattimore & Szepesvari 2020, ch. 7).
* ``kl_ucb``: the largest ``q`` with ``n kl(mean, q) <= ln t + c ln ln t``
  (Garivier & Cappe 2011, "The KL-UCB Algorithm for Bounded Stochastic Bandits and
  Beyond", COLT; ``c = 0`` as in their experiments), solved by vectorized bisection;
  with Gaussian arms the bound has the closed form ``mean + sigma sqrt(2 (ln t + c ln ln t) / n)``.
* ``thompson``: Thompson sampling (Thompson 1933): Beta(1 + successes, 1 + failures)
  posteriors for Bernoulli arms (Agrawal & Goyal 2012; Kaufmann, Korda & Munos 2012
  prove it matches the Lai-Robbins bound); for Gaussian arms the posterior
  N(sum / (n + 1), sigma^2 / (n + 1)) of a N(0, sigma^2) prior (Agrawal & Goyal 2013).
* ``linucb``: disjoint LinUCB (Li, Chu, Langford & Schapire 2010, "A Contextual-Bandit
  Approach to Personalized News Article Recommendation", WWW, Alg. 1): one ridge
  regression per arm on the context (plus a bias), pull the arm with the largest
  ``theta_a . x + alpha sqrt(x^T A_a^-1 x)``; ``A_a^-1`` kept by Sherman-Morrison updates.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive, check_probability

BANDIT_ENV = "deploy_envs/Bandit-v0"
CONTEXTUAL_ENV = "deploy_envs/ContextualBandit-v0"
BANDIT_ENVS = (BANDIT_ENV, CONTEXTUAL_ENV)


def _bandit_core(env: Any):
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    slices = getattr(core, "obs_slices", {})
    if "last_arm" not in slices or "last_reward" not in slices:
        raise ValueError(f"env={env!r} is not a Bandit-v0 or ContextualBandit-v0 env (no last_arm/last_reward feedback in its observation)")
    return core


class BanditAgent(Agent):
    """Base of the batched bandit agents: per-copy pull counts and reward sums from the feedback."""

    name = "bandit_agent"

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        self.core = _bandit_core(env)
        self.K = int(self.core.arms)
        self.n = int(getattr(env, "num_envs", 1))
        self.gaussian = getattr(self.core, "distribution", "bernoulli") == "gaussian"
        self.sigma = float(getattr(self.core, "sigma", 1.0))
        self.rng = np.random.default_rng(self.seed)
        self._arm = self.core.obs_slices["last_arm"]
        self._reward = self.core.obs_slices["last_reward"].start
        self.counts = np.zeros((self.n, self.K))
        self.sums = np.zeros((self.n, self.K))
        self._rows = np.arange(self.n)

    def _last_pulls(self, obs: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The copies whose observation shows an arm pulled on the previous step (not the restarted ones), their rows and the arms."""
        onehot = obs[:, self._arm]
        pulled = (onehot.max(1) > 0.5) & ~start
        return pulled, self._rows[pulled], onehot[pulled].argmax(1)

    def observe(self, obs: np.ndarray, episode_start: np.ndarray) -> None:
        """Clear the statistics of restarted copies and add the previous pull of the others."""
        obs = np.asarray(obs)
        if len(obs) != self.n:
            raise ValueError(f"got observations of {len(obs)} copies; the agent was set up for {self.n}")
        start = np.asarray(episode_start, dtype=bool)
        if start.any():
            self.counts[start] = 0.0
            self.sums[start] = 0.0
        pulled, rows, arms = self._last_pulls(obs, start)
        if pulled.any():
            self.counts[rows, arms] += 1.0
            self.sums[rows, arms] += obs[pulled, self._reward]

    def index(self) -> np.ndarray:
        """Per-copy, per-arm score; the agent pulls the argmax (ties broken at random)."""
        raise NotImplementedError

    def act(self, obs, episode_start):
        self.observe(obs, episode_start)
        score = self.index()
        score = np.where(self.counts == 0, np.inf, score)  # pull every arm once first
        # random tie-breaking: among the maxima pick uniformly
        jitter = self.rng.random(score.shape)
        best = score == score.max(1, keepdims=True)
        return np.where(best, jitter, -1.0).argmax(1)

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(1, keepdims=True)

    @property
    def empirical_means(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1.0)


class EpsilonGreedyAgent(BanditAgent):
    """Epsilon-greedy with a fixed rate (or ``min(1, decay K / t)`` when ``decay`` is given)."""

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, decay: float | None = None, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.epsilon = check_probability("epsilon", epsilon)
        self.decay = None if decay is None else check_positive("decay", decay)

    def act(self, obs, episode_start):
        self.observe(obs, episode_start)
        mean = np.where(self.counts == 0, np.inf, self.empirical_means)
        jitter = self.rng.random(mean.shape)
        greedy = np.where(mean == mean.max(1, keepdims=True), jitter, -1.0).argmax(1)
        if self.decay is None:
            eps = self.epsilon
        else:
            eps = np.minimum(1.0, self.decay * self.K / np.maximum(self.total[:, 0], 1.0))
        explore = self.rng.random(self.n) < eps
        return np.where(explore, self.rng.integers(self.K, size=self.n), greedy)


class UCB1Agent(BanditAgent):
    """UCB1 (Auer et al. 2002): ``mean + scale * sqrt(2 ln t / n)``, ``scale`` = sigma for Gaussian arms."""

    name = "ucb1"

    def __init__(self, scale: float | None = None, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.scale = None if scale is None else check_positive("scale", scale)

    def index(self):
        scale = self.scale if self.scale is not None else (self.sigma if self.gaussian else 1.0)
        n = np.maximum(self.counts, 1.0)
        return self.empirical_means + scale * np.sqrt(2.0 * np.log(np.maximum(self.total, 1.0)) / n)


class KLUCBAgent(BanditAgent):
    """KL-UCB (Garivier & Cappe 2011) with exploration ``ln t + c ln ln t``; Bernoulli KL (bisection) or Gaussian."""

    name = "kl_ucb"

    def __init__(self, c: float = 0.0, iterations: int = 16, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.c = check_number("c", c, low=0.0)
        self.iterations = check_positive("iterations", iterations, integer=True)

    def index(self):
        t = np.maximum(self.total, 1.0)
        budget = np.log(t) + self.c * np.log(np.maximum(np.log(t), 1.0))
        n = np.maximum(self.counts, 1.0)
        mean = self.empirical_means
        if self.gaussian:
            return mean + self.sigma * np.sqrt(2.0 * budget / n)
        eps = 1e-15
        p = np.clip(mean, eps, 1.0 - eps)
        q_p = 1.0 - p
        # kl(p, q) = p ln p + (1-p) ln(1-p) - p ln q - (1-p) ln(1-q); the first two terms once
        target = budget / n - (p * np.log(p) + q_p * np.log(q_p))
        lo, hi = p.copy(), np.ones_like(p)
        for _ in range(self.iterations):  # bisection: kl(p, q) increases in q on [p, 1]
            mid = 0.5 * (lo + hi)
            over = -(p * np.log(mid) + q_p * np.log1p(-np.minimum(mid, 1.0 - eps))) > target
            np.copyto(hi, mid, where=over)
            np.copyto(lo, mid, where=~over)
        return lo


class ThompsonAgent(BanditAgent):
    """Thompson sampling: Beta-Bernoulli, or Gaussian with known sigma (``variant``: auto/beta/gaussian)."""

    name = "thompson"

    def __init__(self, variant: str = "auto", seed: int | None = 0) -> None:
        super().__init__(seed)
        from deploy_envs.core.validation import check_choice

        self.variant = check_choice("variant", variant, ("auto", "beta", "gaussian"))

    def setup(self, env):
        super().setup(env)
        gaussian = self.gaussian if self.variant == "auto" else self.variant == "gaussian"
        if not gaussian and self.gaussian:
            raise ValueError("variant='beta' needs Bernoulli (0/1) rewards; this env has distribution='gaussian'")
        self.use_gaussian = gaussian

    def index(self):
        if self.use_gaussian:
            n1 = self.counts + 1.0
            return self.sums / n1 + self.sigma / np.sqrt(n1) * self.rng.standard_normal(self.counts.shape)
        s = self.sums
        return self.rng.beta(1.0 + s, 1.0 + self.counts - s)

    def act(self, obs, episode_start):
        # the posterior already explores: no forced first pull of every arm
        self.observe(obs, episode_start)
        return self.index().argmax(1)


class LinUCBAgent(BanditAgent):
    """Disjoint LinUCB (Li et al. 2010) on the observation's ``context`` plus a bias feature."""

    name = "linucb"

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.ridge = check_positive("ridge", ridge)

    def setup(self, env):
        super().setup(env)
        if "context" not in self.core.obs_slices:
            raise ValueError("linucb needs a contextual env (an observation with a 'context' part), e.g. deploy_envs/ContextualBandit-v0")
        self._ctx = self.core.obs_slices["context"]
        d = self.d = self._ctx.stop - self._ctx.start + 1
        self.A_inv = np.broadcast_to(np.eye(d) / self.ridge, (self.n, self.K, d, d)).copy()
        self.b = np.zeros((self.n, self.K, d))
        self.prev_x = np.zeros((self.n, d))

    def _features(self, obs):
        x = np.empty((len(obs), self.d))
        x[:, :-1] = obs[:, self._ctx]
        x[:, -1] = 1.0
        return x

    def act(self, obs, episode_start):
        obs = np.asarray(obs)
        start = np.asarray(episode_start, dtype=bool)
        if start.any():
            self.A_inv[start] = np.eye(self.d) / self.ridge
            self.b[start] = 0.0
        pulled, rows, arms = self._last_pulls(obs, start)
        if pulled.any():
            x = self.prev_x[rows]
            Ainv = self.A_inv[rows, arms]
            Ax = np.einsum("nij,nj->ni", Ainv, x)
            denom = 1.0 + np.einsum("ni,ni->n", x, Ax)
            self.A_inv[rows, arms] = Ainv - np.einsum("ni,nj->nij", Ax, Ax) / denom[:, None, None]
            self.b[rows, arms] += obs[pulled, self._reward][:, None] * x
        x = self._features(obs)
        self.prev_x = x
        Ax = np.einsum("nkij,nj->nki", self.A_inv, x)
        mean = np.einsum("nki,nki->nk", self.b, Ax)  # theta . x = b^T A^-1 x (A symmetric)
        width = np.sqrt(np.maximum(np.einsum("nki,ni->nk", Ax, x), 0.0))
        score = mean + self.alpha * width
        jitter = self.rng.random(score.shape)
        return np.where(score >= score.max(1, keepdims=True) - 1e-12, jitter, -1.0).argmax(1)


register_baseline("epsilon_greedy", EpsilonGreedyAgent, envs=BANDIT_ENVS, summary="explore uniformly with probability epsilon, else the best empirical mean")
register_baseline("ucb1", UCB1Agent, envs=BANDIT_ENVS, summary="UCB1 (Auer et al. 2002): empirical mean + sqrt(2 ln t / n)")
register_baseline("kl_ucb", KLUCBAgent, envs=BANDIT_ENVS, summary="KL-UCB (Garivier & Cappe 2011): KL upper confidence bound")
register_baseline("thompson", ThompsonAgent, envs=BANDIT_ENVS, summary="Thompson sampling: Beta-Bernoulli or Gaussian posterior sampling")
register_baseline("linucb", LinUCBAgent, envs=(CONTEXTUAL_ENV,), summary="disjoint LinUCB (Li et al. 2010) on the context")

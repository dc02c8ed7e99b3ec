"""Reference model thieves for ``deploy_envs/ModelExtraction-v0``.

Every agent works only through the env's API: it reads the env's configuration
(``batch_size``, ``d``, ``K``, ``max_queries``, the observation layout
``obs_slices``) from ``env.unwrapped.core`` in :meth:`setup`, submits queries as
actions and reads the answers from the observations. None calls the victim, the
env's surrogate or its held-out set. Agents that need a model of their own (the
Jacobian and uncertainty strategies) train one on their own queries and answers,
with the same batched surrogate code the env uses.

| name | algorithm |
|---|---|
| ``random_queries`` | uniform random inputs in ``[0, 1]^d`` |
| ``knockoff`` | natural inputs drawn without replacement from a public pool (Knockoff Nets, Orekondy et al. 2019, random strategy) |
| ``jacobian_augmentation`` | Papernot et al. 2017: seed inputs from the pool, then rounds of ``x + lambda * sign(dF_sub[y]/dx)`` on the substitute |
| ``uncertainty_sampling`` | active learning: the pool inputs on which the agent's own surrogate is least certain (max entropy; Lewis & Gale 1994) |
| ``equation_solving`` | Tramer et al. 2016: the ``d + 1`` queries ``c 1`` and ``c 1 + h e_j``, which make the log-ratio equations of a linear softmax victim square and well conditioned |

**The public pool.** The natural-data strategies draw from the digits *train*
split, the data the zoo victims were trained on; fidelity is measured on the
*test* split, which no agent here queries. The pool is thus the most favourable
natural pool (Orekondy et al.'s setting where the adversary's data follows the
victim's training distribution); a pool from another distribution would give lower
fidelity. Pass ``pool=`` (an array of flat inputs in ``[0, 1]``) to use another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive

ENV_ID = "deploy_envs/ModelExtraction-v0"


@dataclass(frozen=True)
class ExtractionConfig:
    """What a thief may know of a ``ModelExtraction-v0`` env: its configuration, not its victim."""

    num_envs: int
    batch_size: int
    d: int
    K: int
    max_queries: int
    slices: dict[str, slice]
    dataset: str

    @classmethod
    def from_env(cls, env: Any) -> ExtractionConfig:
        core = getattr(env.unwrapped, "core", None)
        needed = ("batch_size", "d", "K", "max_queries", "obs_slices", "api")
        if core is None or any(not hasattr(core, a) for a in needed):
            raise ValueError(f"env={env!r} is not an {ENV_ID} env: its unwrapped.core lacks {', '.join(needed)}")
        return cls(int(core.num_envs), int(core.batch_size), int(core.d), int(core.K), int(core.max_queries), dict(core.obs_slices), core.api.dataset)


def public_pool(dataset: str = "digits") -> np.ndarray:
    """The thief's natural data: the dataset's train split, flattened (see the module docstring)."""
    from deploy_envs.data import load_dataset

    ds = load_dataset(dataset)
    return np.ascontiguousarray(ds.x_train.reshape(len(ds.y_train), -1), dtype=np.float32)


class ExtractionAgent(Agent):
    """Base: keeps each copy's queries and answers (the thief's own records)."""

    def __init__(self, seed: int | None = 0, pool: np.ndarray | None = None) -> None:
        self.seed = seed
        self._pool_arg = pool

    def setup(self, env: Any) -> None:
        self.cfg = c = ExtractionConfig.from_env(env)
        self.rng = np.random.default_rng(self.seed)
        self.pool = public_pool(c.dataset) if self._pool_arg is None else np.asarray(self._pool_arg, np.float32).reshape(-1, c.d)
        n = c.num_envs
        self.hx = np.zeros((n, c.max_queries, c.d), np.float32)
        self.hy = np.zeros((n, c.max_queries, c.K), np.float32)
        self.hw = np.zeros((n, c.max_queries), np.float32)
        self.count = np.zeros(n, np.int64)
        self.last = np.zeros((n, c.batch_size, c.d), np.float32)
        self.pending = np.zeros(n, bool)

    def _record(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        """Store the answers to the last queries; return the copies starting a new episode."""
        c = self.cfg
        start = np.asarray(episode_start, bool) | (obs[:, c.slices["budget"]][:, 0] >= 1.0)
        for i in np.flatnonzero(self.pending & ~start):
            k = self.count[i]
            if k + c.batch_size > c.max_queries:
                continue
            ans = obs[i, c.slices["answer"]].reshape(c.batch_size, c.K)
            ok = obs[i, c.slices["answered"]]
            tot = ans.sum(1, keepdims=True)
            self.hx[i, k : k + c.batch_size] = self.last[i]
            self.hy[i, k : k + c.batch_size] = ans / np.maximum(tot, 1e-12)
            self.hw[i, k : k + c.batch_size] = ok * (tot[:, 0] > 0)
            self.count[i] += c.batch_size
        self.count[start] = 0
        self.hw[start] = 0.0
        return start

    def _submit(self, queries: np.ndarray) -> np.ndarray:
        self.last = queries.reshape(self.cfg.num_envs, self.cfg.batch_size, self.cfg.d).astype(np.float32)
        self.pending[:] = True
        return self.last.reshape(self.cfg.num_envs, -1).copy()

    def act(self, obs, episode_start):
        start = self._record(obs, episode_start)
        return self._submit(np.clip(self.choose(start), 0.0, 1.0))

    def choose(self, start: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomQueries(ExtractionAgent):
    """Uniform random queries in ``[0, 1]^d``."""

    def choose(self, start):
        c = self.cfg
        return self.rng.random((c.num_envs, c.batch_size, c.d), dtype=np.float32)


class Knockoff(ExtractionAgent):
    """Natural queries from the public pool, without replacement (Orekondy et al. 2019, "Knockoff Nets", random strategy)."""

    def setup(self, env):
        super().setup(env)
        self.order = np.zeros((self.cfg.num_envs, len(self.pool)), np.int64)

    def choose(self, start):
        c = self.cfg
        for i in np.flatnonzero(start):
            self.order[i] = self.rng.permutation(len(self.pool))
        k = (self.count[:, None] + np.arange(c.batch_size)[None]) % len(self.pool)
        return self.pool[np.take_along_axis(self.order, k, 1)]


class _OwnSurrogate:
    """Helpers for agents that train a substitute of their own on their records."""

    def _make_surrogate(self, hidden: int, lr: float):
        from deploy_envs.topics.extraction.surrogate import BatchedSurrogate

        c = self.cfg
        self.sub = BatchedSurrogate("mlp", c.d, c.K, c.num_envs, hidden=hidden, lr=lr)
        self.sub_rngs = [np.random.default_rng([0 if self.seed is None else self.seed, i]) for i in range(c.num_envs)]

    def _train(self, idx: np.ndarray, steps: int, fresh: bool) -> None:
        if fresh:
            self.sub.init(idx, self.sub_rngs)
        n = int(self.count[idx].max())
        if n == 0:
            return
        t = idx
        self.sub.fit(idx, torch.from_numpy(self.hx[t, :n]), torch.from_numpy(self.hy[t, :n]), torch.from_numpy(self.hw[t, :n]), steps)


class JacobianAugmentation(ExtractionAgent, _OwnSurrogate):
    """Papernot et al. 2017 ("Practical Black-Box Attacks against Machine Learning"), Jacobian-based dataset augmentation.

    Starts from ``seeds`` pool inputs; whenever its queue of queries is empty it
    retrains its substitute (an MLP) on everything answered so far and adds, for each
    input ``x`` of its set, ``clip(x + step * sign(dF_sub[y(x)]/dx), 0, 1)`` with
    ``y(x)`` the victim's answer on ``x``: the set doubles each round (Papernot et
    al. use ``step = 0.1`` and 150 MNIST seeds; here ``seeds`` defaults to 20).
    """

    def __init__(self, seed: int | None = 0, pool: np.ndarray | None = None, seeds: int = 20, step: float = 0.1,
                 hidden: int = 64, train_steps: int = 100, lr: float = 0.01) -> None:
        super().__init__(seed, pool)
        self.seeds = check_positive("seeds", seeds, integer=True)
        self.step = check_positive("step", step)
        self.hidden = check_positive("hidden", hidden, integer=True)
        self.train_steps = check_positive("train_steps", train_steps, integer=True)
        self.lr = check_positive("lr", lr)

    def setup(self, env):
        super().setup(env)
        self._make_surrogate(self.hidden, self.lr)
        n = self.cfg.num_envs
        self.queue: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.set_size = np.zeros(n, np.int64)

    def choose(self, start):
        c = self.cfg
        for i in np.flatnonzero(start):
            self.queue[i] = list(self.pool[self.rng.choice(len(self.pool), self.seeds, replace=False)])
            self.set_size[i] = 0
        need = np.flatnonzero([len(q) < c.batch_size for q in self.queue])
        # copies whose queue ran dry after their set was answered: augment (batched over those copies)
        ready = np.array([i for i in need if self.count[i] > 0 and not self.queue[i]], np.int64)
        if len(ready):
            self._train(ready, self.train_steps, fresh=False)
            n = int(self.count[ready].max())
            x = torch.from_numpy(self.hx[ready, :n])
            y = torch.from_numpy(self.hy[ready, :n].argmax(-1))
            g = self.sub.input_gradient(ready, x, y).numpy()
            for j, i in enumerate(ready):
                k = int(self.count[i])
                new = np.clip(self.hx[i, :k] + self.step * np.sign(g[j, :k]), 0.0, 1.0)
                self.queue[i] = list(new)
        out = np.empty((c.num_envs, c.batch_size, c.d), np.float32)
        for i in range(c.num_envs):
            q = self.queue[i]
            while len(q) < c.batch_size:  # top up with fresh pool inputs (only if the set is too small)
                q.append(self.pool[self.rng.integers(len(self.pool))])
            out[i] = np.asarray(q[: c.batch_size])
            self.queue[i] = q[c.batch_size :]
        return out


class UncertaintySampling(ExtractionAgent, _OwnSurrogate):
    """Active learning by uncertainty sampling (Lewis & Gale 1994; as a thief: Pal et al. 2020, ActiveThief).

    The first batch is random pool inputs; then, each step, the agent's own MLP
    surrogate is trained further (``train_steps`` Adam steps, warm started) on all
    answers so far and the ``batch_size`` not yet queried pool inputs of highest
    predictive entropy are queried.
    """

    def __init__(self, seed: int | None = 0, pool: np.ndarray | None = None, hidden: int = 64, train_steps: int = 30,
                 lr: float = 0.01, candidates: int | None = None) -> None:
        super().__init__(seed, pool)
        self.hidden = check_positive("hidden", hidden, integer=True)
        self.train_steps = check_positive("train_steps", train_steps, integer=True)
        self.lr = check_positive("lr", lr)
        self.candidates = None if candidates is None else check_positive("candidates", candidates, integer=True)

    def setup(self, env):
        super().setup(env)
        self._make_surrogate(self.hidden, self.lr)
        self.used = np.zeros((self.cfg.num_envs, len(self.pool)), bool)
        self.pool_t = torch.from_numpy(self.pool)

    def choose(self, start):
        c = self.cfg
        idx = np.arange(c.num_envs)
        if start.any():
            s = np.flatnonzero(start)
            self.used[s] = False
            self.sub.init(s, self.sub_rngs)
        out = np.empty((c.num_envs, c.batch_size, c.d), np.float32)
        fresh = self.count == 0
        for i in np.flatnonzero(fresh):
            pick = self.rng.choice(len(self.pool), c.batch_size, replace=False)
            self.used[i, pick] = True
            out[i] = self.pool[pick]
        act = idx[~fresh]
        if len(act):
            self._train(act, self.train_steps, fresh=False)
            ent = self.sub.entropy(act, self.pool_t).numpy()
            ent[self.used[act]] = -1.0
            ent += self.rng.random(ent.shape) * 1e-6  # random tie-breaking
            pick = np.argpartition(-ent, c.batch_size - 1, axis=1)[:, : c.batch_size]
            for j, i in enumerate(act):
                self.used[i, pick[j]] = True
                out[i] = self.pool[pick[j]]
        return out


class EquationSolving(ExtractionAgent):
    """Tramer et al. 2016 ("Stealing Machine Learning Models via Prediction APIs"), equation solving.

    Queries ``c * 1`` and then ``c * 1 + h * e_j`` for ``j = 1..d`` (``d + 1`` queries in
    all), on which the victim's log-ratios are a square, perfectly conditioned linear
    system: ``r(c1 + h e_j) - r(c1) = h (w_k - w_0)_j``. Use it with
    ``surrogate="logistic", fit="equations"`` (the env solves the system); after
    ``d + 1`` queries it continues with uniform random ones.
    """

    def __init__(self, seed: int | None = 0, pool: np.ndarray | None = None, center: float = 0.25, h: float = 0.5) -> None:
        super().__init__(seed, pool)
        self.center = check_number("center", center, low=0.0, high=1.0)
        self.h = check_number("h", h, low=0.0, high=1.0 - self.center, low_inclusive=False)

    def choose(self, start):
        c = self.cfg
        design = np.full((c.d + 1, c.d), self.center, np.float32)
        design[np.arange(1, c.d + 1), np.arange(c.d)] += self.h
        k = self.count[:, None] + np.arange(c.batch_size)[None]
        out = self.rng.random((c.num_envs, c.batch_size, c.d), dtype=np.float32)
        inside = k <= c.d
        out[inside] = design[k[inside]]
        return out


register_baseline("random_queries", RandomQueries, envs=(ENV_ID,), summary="uniform random queries in [0, 1]^d")
register_baseline("knockoff", Knockoff, envs=(ENV_ID,), summary="natural queries from a public pool (Knockoff Nets, Orekondy et al. 2019)")
register_baseline("jacobian_augmentation", JacobianAugmentation, envs=(ENV_ID,), summary="Jacobian-based dataset augmentation on a substitute (Papernot et al. 2017)")
register_baseline("uncertainty_sampling", UncertaintySampling, envs=(ENV_ID,), summary="pool queries of highest surrogate entropy (active learning)")
register_baseline("equation_solving", EquationSolving, envs=(ENV_ID,), summary="d+1 designed queries for equation solving on a linear victim (Tramer et al. 2016)")

"""Reference training schedules for ``deploy_envs/TrainingControl-v0``.

Each acts on the observation only (progress, validation accuracy) and returns the
env's normalized action through ``core.encode_actions(lr, batch_size, weight_decay)``:

* ``constant``: one learning rate, batch size and weight decay throughout.
* ``step_decay``: the learning rate multiplied by ``gamma`` at each milestone (fractions
  of the budget), as in He et al. 2016 (0.1 at 50% and 75%).
* ``cosine``: cosine annealing from ``lr`` to ``lr_min`` over the budget (Loshchilov &
  Hutter 2017, SGDR, without restarts).
* ``random_search``: per episode one configuration drawn log-uniformly (learning rate),
  uniformly over powers of two (batch size) and uniformly (weight decay) from the env's
  ranges, held constant (Bergstra & Bengio 2012).
* ``early_stopping``: constant until the validation accuracy has not improved for
  ``patience`` chunks, then training stops (lowest learning rate of the env's range,
  largest batch): stopping on validation (Prechelt 1998, "Early Stopping - But When?").
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive

ENV_ID = "deploy_envs/TrainingControl-v0"
PROGRESS, VAL_ACCURACY = 5, 3  # observation indices


class ScheduleAgent(Agent):
    """A learning-rate schedule as a function of progress in [0, 1]."""

    def __init__(self, lr: float = 0.1, batch_size: int = 32, weight_decay: float = 0.0) -> None:
        self.lr = check_positive("lr", lr)
        self.batch_size = check_positive("batch_size", batch_size, integer=True)
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)

    def setup(self, env: Any) -> None:
        self.core = env.unwrapped.core
        lo, hi = self.core.lr_range
        if not lo <= self.lr <= hi:
            raise ValueError(f"lr={self.lr} is outside the env's lr_range={self.core.lr_range}")
        blo, bhi = self.core.batch_size_range
        if not blo <= self.batch_size <= bhi:
            raise ValueError(f"batch_size={self.batch_size} is outside the env's batch_size_range={self.core.batch_size_range}")

    def lr_at(self, progress: np.ndarray) -> np.ndarray:
        return np.full(len(progress), self.lr)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        progress = np.asarray(obs)[:, PROGRESS].astype(np.float64)
        return self.core.encode_actions(self.lr_at(progress), self.batch_size, self.weight_decay)


class ConstantSchedule(ScheduleAgent):
    name = "constant"


class StepDecaySchedule(ScheduleAgent):
    name = "step_decay"

    def __init__(self, lr: float = 0.3, gamma: float = 0.1, milestones: tuple[float, ...] = (0.5, 0.75), **kwargs: Any) -> None:
        super().__init__(lr=lr, **kwargs)
        self.gamma = check_number("gamma", gamma, low=0.0, high=1.0, low_inclusive=False)
        self.milestones = tuple(check_number(f"milestones[{i}]", m, low=0.0, high=1.0) for i, m in enumerate(milestones))

    def lr_at(self, progress):
        passed = sum((progress >= m).astype(np.int64) for m in self.milestones)
        return self.lr * self.gamma ** passed


class CosineSchedule(ScheduleAgent):
    name = "cosine"

    def __init__(self, lr: float = 0.3, lr_min: float | None = None, **kwargs: Any) -> None:
        super().__init__(lr=lr, **kwargs)
        self.lr_min = None if lr_min is None else check_positive("lr_min", lr_min)

    def lr_at(self, progress):
        lo = self.core.lr_range[0] if self.lr_min is None else self.lr_min
        # the chunk starting at progress p runs until p + 1/horizon: anneal at its midpoint
        p = np.clip(progress + 0.5 / self.core.horizon, 0.0, 1.0)
        return lo + 0.5 * (self.lr - lo) * (1.0 + np.cos(math.pi * p))


class RandomSearch(Agent):
    """One random configuration per episode, held constant."""

    name = "random_search"

    def __init__(self, seed: int | None = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def setup(self, env: Any) -> None:
        self.core = env.unwrapped.core
        self.config = np.zeros((env.num_envs, 3), np.float32)

    def act(self, obs, episode_start):
        start = np.flatnonzero(episode_start)
        if len(start):
            c = self.core
            lr = np.exp(self.rng.uniform(math.log(c.lr_range[0]), math.log(c.lr_range[1]), len(start)))
            e = self.rng.integers(int(math.log2(c.batch_size_range[0])), int(math.log2(c.batch_size_range[1])) + 1, len(start))
            wd = self.rng.uniform(0.0, c.max_weight_decay, len(start))
            self.config[start] = c.encode_actions(lr, 2.0 ** e, wd)
        return self.config.copy()


class EarlyStopping(ConstantSchedule):
    """Constant schedule that stops training once validation accuracy stalls for ``patience`` chunks."""

    name = "early_stopping"

    def __init__(self, patience: int = 3, min_delta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.patience = check_positive("patience", patience, integer=True)
        self.min_delta = check_number("min_delta", min_delta, low=0.0)

    def setup(self, env: Any) -> None:
        super().setup(env)
        n = env.num_envs
        self.best = np.full(n, -np.inf)
        self.stale = np.zeros(n, np.int64)
        self.stopped = np.zeros(n, bool)
        self.stop_action = self.core.encode_actions(self.core.lr_range[0], self.core.batch_size_range[1], 0.0)

    def act(self, obs, episode_start):
        obs = np.asarray(obs)
        start = np.asarray(episode_start, bool)
        self.best[start], self.stale[start], self.stopped[start] = -np.inf, 0, False
        val = obs[:, VAL_ACCURACY].astype(np.float64)
        improved = val > self.best + self.min_delta
        self.best = np.where(improved, val, self.best)
        self.stale = np.where(improved, 0, self.stale + 1)
        self.stopped |= self.stale >= self.patience
        act = super().act(obs, episode_start)
        act[self.stopped] = self.stop_action
        return act


for _name, _cls, _summary in (
    ("constant", ConstantSchedule, "constant learning rate, batch size and weight decay"),
    ("step_decay", StepDecaySchedule, "learning rate times gamma at fixed fractions of the budget (He et al. 2016)"),
    ("cosine", CosineSchedule, "cosine annealing of the learning rate over the budget (Loshchilov & Hutter 2017)"),
    ("random_search", RandomSearch, "one random configuration per episode (Bergstra & Bengio 2012)"),
    ("early_stopping", EarlyStopping, "constant until validation accuracy stalls for `patience` chunks, then stop (Prechelt 1998)"),
):
    register_baseline(_name, _cls, envs=(ENV_ID,), summary=_summary)

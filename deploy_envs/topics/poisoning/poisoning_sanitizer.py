"""``deploy_envs/PoisoningSanitizer-v0``: a data poisoner against a sanitizer choosing its filter each round.

Build it with ``deploy_envs.make_game("deploy_envs/PoisoningSanitizer-v0")``.
The game is written once as :class:`PoisoningSanitizerCore`, a batched core that drives a
batched ``Poisoning-v0`` core (:class:`~deploy_envs.topics.poisoning.poisoning.PoisoningCore`,
all copies' victims retrained in one set of tensor ops); the PettingZoo
Its PettingZoo view, ``make_game("deploy_envs/PoisoningSanitizer-v0")``, is that core at batch size 1.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_number
from deploy_envs.topics.poisoning.poisoning import PoisoningCore
from deploy_envs.topics.poisoning.sanitizers import SANITIZERS, Sanitizer

AGENTS = ("poisoner", "sanitizer")
#: the sanitizer's strength levels: the quantile of the clean distances/losses kept (centroid, loss)
#: and the share of agreeing neighbours required (knn), from mild to strict
QUANTILES = (0.99, 0.95, 0.9, 0.8)
AGREEMENTS = (0.2, 0.4, 0.5, 0.6)
_PASSED_ON = ("sanitizer", "sanitizer_quantile", "knn_agreement", "removal_penalty")


class PoisoningSanitizerCore(GameCore):
    """## Description

    A repeated simultaneous-move game over a victim's training set. Each round the
    ``poisoner`` submits ``points_per_step`` poison points (features and labels) and,
    at the same time, the ``sanitizer`` picks a data filter and its strength for
    that round's incoming points (the filters of ``Poisoning-v0``: none, the
    centroid sphere of Steinhardt, Koh & Liang 2017, loss-based filtering as in Koh,
    Steinhardt & Liang 2018, or k-NN label sanitization of Paudice et al. 2018; see
    :mod:`deploy_envs.topics.poisoning.sanitizers`). Points the filter flags are
    discarded, the rest join the training set, and the victim (any ``Poisoning-v0``
    victim) is retrained warm-started as in ``Poisoning-v0``. A filter also
    discards honest data: each filter and strength has a *clean discard rate*, the
    share of the clean training points it would flag (measured once on the clean
    training set under the clean victim), which the sanitizer pays for.

    ## Agents

    ``"poisoner"`` and ``"sanitizer"``; both act every round.

    ## Action Spaces

    * poisoner: the action space of ``Poisoning-v0``, ``Box(-1, 1, (points_per_step * (d + 1),), float32)``
      (``core.poisoning.encode`` / ``decode`` convert points and actions).
    * sanitizer: ``MultiDiscrete([4, 4])``: the filter (index into
      ``("none", "centroid", "loss", "knn")``) and its strength level ``s`` from mild (0)
      to strict (3): quantile ``QUANTILES[s] = (0.99, 0.95, 0.9, 0.8)[s]`` for
      centroid and loss, required neighbour agreement ``AGREEMENTS[s] = (0.2, 0.4, 0.5, 0.6)[s]``
      for knn (``knn_k`` neighbours); ignored for none.

    ## Observation Spaces

    Flat ``Box`` es of float32 (``core.obs_slices[agent]`` names the parts).

    poisoner: the observation of ``Poisoning-v0`` with the same arguments (victim
    parameters or predictions by ``threat_model``, class means, budget left, share of
    its points discarded so far).

    sanitizer:

    | part | size | range | content |
    |---|---|---|---|
    | ``test_error`` | 1 | [0, 1] | the victim's current test error (the defender's validation error) |
    | ``budget`` | 1 | [0, 1] | share of the rounds left |
    | ``previous_filter`` | 4 | [0, 1] | one-hot of its filter last round (zeros in round 0) |
    | ``previous_strength`` | 4 | [0, 1] | one-hot of its strength last round (zeros in round 0) |
    | ``last_removed`` | 1 | [0, 1] | share of last round's incoming points its filter discarded |

    ## Rewards

    Zero-sum on the victim's test error, as in ``Poisoning-v0``: the poisoner gets
    ``reward_scale`` times the change of the test error at each retrain (percentage
    points with the default 100); the sanitizer gets the negative of that minus
    ``clean_cost_weight * reward_scale * clean_discard_rate[filter, strength]``
    (with ``clean_cost_weight=0`` the game is exactly zero-sum).

    ## Starting State

    As ``Poisoning-v0``: the victim trained on the clean data, no poison, no
    previous filter.

    ## Episode End

    Both agents are terminated when the poison budget is spent (after
    ``ceil(budget_points / points_per_step)`` rounds). The PettingZoo env then has no
    live agents left.

    ## Info

    Per agent, the same keys: ``test_error``, ``points_injected``,
    ``points_removed``, ``budget_left``, ``retrained`` (as ``Poisoning-v0``),
    ``filter`` (index), ``strength`` (level), ``removed_this_round`` and
    ``clean_discard_rate`` (of the filter chosen). Reset infos carry ``test_error``,
    ``points_injected``, ``points_removed`` and ``budget_left``.

    ## Arguments

    ``clean_cost_weight`` (>= 0, default 0.1) and every argument of ``Poisoning-v0``
    (``dataset``, ``victim``, ``budget``, ``points_per_step``, ``retrain_every``,
    ``train_steps``, ``goal``, ``threat_model``, ``knn_k``, ...) except those of its
    fixed sanitizer (``sanitizer``, ``sanitizer_quantile``, ``knn_agreement``) and
    ``removal_penalty``, which the sanitizer agent replaces.

    ## Version History

    * v0: initial release.
    """

    forwards_kwargs_to = PoisoningCore  # the game's **kwargs configure the poisoning env it wraps

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *, clean_cost_weight: float = 0.1,
                 **poisoning_kwargs: Any) -> None:
        super().__init__(num_envs, render_mode)
        self.clean_cost_weight = check_number("clean_cost_weight", clean_cost_weight, low=0.0)
        for name in _PASSED_ON:
            if name in poisoning_kwargs:
                raise ValueError(f"{name}={poisoning_kwargs[name]!r} is not an argument of this game: the sanitizer agent chooses the filter each round")
        self.poisoning = PoisoningCore(num_envs, None, sanitizer="none", removal_penalty=0.0, **poisoning_kwargs)
        self.poisoning.rngs = self.rngs  # one generator per copy, shared
        core = self.poisoning
        self.F, self.S = len(SANITIZERS), len(QUANTILES)
        knn_k = poisoning_kwargs.get("knn_k", 10)
        self.filters = [[Sanitizer(kind, core.x_train, core.y_train, core.K, quantile=QUANTILES[s], knn_k=knn_k,
                                   knn_agreement=AGREEMENTS[s], device=core.device) for s in range(self.S)] for kind in SANITIZERS]
        # share of the clean training points each filter would flag, under the clean victim
        x, y = core.x_train, core.y_train
        theta = core.theta_clean[None]
        self.clean_discard_rate = np.array(
            [[1.0 - f.keep(x[None], y[None], theta, core.victims).mean() for f in row] for row in self.filters]
        )
        self.observation_spaces = {"poisoner": core.single_observation_space}
        self.obs_slices = {"poisoner": core.obs_slices}
        self.observation_spaces["sanitizer"], self.obs_slices["sanitizer"] = flat_box(
            [("test_error", 1, 0.0, 1.0), ("budget", 1, 0.0, 1.0), ("previous_filter", self.F, 0.0, 1.0),
             ("previous_strength", self.S, 0.0, 1.0), ("last_removed", 1, 0.0, 1.0)]
        )
        self.action_spaces: dict[str, spaces.Space] = {
            "poisoner": core.single_action_space,
            "sanitizer": spaces.MultiDiscrete([self.F, self.S]),
        }
        self.single_observation_space = spaces.Dict(self.observation_spaces)
        self.single_action_space = spaces.Dict(self.action_spaces)
        n = self.num_envs
        self.prev_filter = np.full(n, -1, np.int64)
        self.prev_strength = np.full(n, -1, np.int64)
        self.last_removed = np.zeros(n)
        self.rounds_done = np.zeros(n, np.int64)
        self._eye_f, self._eye_s = np.eye(self.F, dtype=np.float32), np.eye(self.S, dtype=np.float32)

    # ------------------------------------------------------------- seeding

    # --------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        obs, info = self.poisoning.reset_indices(idx, options)
        self.prev_filter[idx] = -1
        self.prev_strength[idx] = -1
        self.last_removed[idx] = 0.0
        self.rounds_done[idx] = 0
        info = {k: info[k] for k in ("test_error", "points_injected", "points_removed", "budget_left")}
        return {"poisoner": obs, "sanitizer": self._observe_sanitizer(idx)}, {a: dict(info) for a in AGENTS}

    # ---------------------------------------------------------------- step

    def step_indices(self, idx, actions):
        idx = np.asarray(idx, dtype=np.int64)
        core = self.poisoning
        xs, ys = core.decode(np.asarray(actions["poisoner"], np.float32))
        choice = np.asarray(actions["sanitizer"], np.int64)
        f, s = choice[:, 0], choice[:, 1]
        keep = np.ones(ys.shape, bool)
        theta = core.theta[idx]
        for code in np.unique(f * self.S + s):  # one screen per filter and strength in use, batched over its copies
            rows = np.flatnonzero(f * self.S + s == code)
            keep[rows] = self.filters[code // self.S][code % self.S].keep(xs[rows], ys[rows], theta[rows], core.victims)
        before = core.removed[idx].copy()
        n_before = core.injected[idx].copy()
        obs, r_poison, done, trunc, info = core.inject(idx, xs, ys, keep)
        arrived = np.maximum(core.injected[idx] - n_before, 1)
        self.last_removed[idx] = (core.removed[idx] - before) / arrived
        self.prev_filter[idx], self.prev_strength[idx] = f, s
        self.rounds_done[idx] += 1
        cost = self.clean_discard_rate[f, s]
        r_san = -r_poison - self.clean_cost_weight * core.reward_scale * cost
        info = dict(info)
        info.update({"filter": f.copy(), "strength": s.copy(), "removed_this_round": self.last_removed[idx].copy(),
                     "clean_discard_rate": cost.astype(np.float64)})
        obs_all = {"poisoner": obs, "sanitizer": self._observe_sanitizer(idx)}
        rewards = {"poisoner": r_poison.astype(np.float64), "sanitizer": r_san.astype(np.float64)}
        infos = {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}
        return obs_all, rewards, done, trunc, infos

    # ------------------------------------------------------------ internals
    def _observe_sanitizer(self, idx: np.ndarray) -> np.ndarray:
        core, s = self.poisoning, self.obs_slices["sanitizer"]
        out = np.zeros((len(idx), self.observation_spaces["sanitizer"].shape[0]), np.float32)
        out[:, s["test_error"]] = core.test_error[idx, None]
        out[:, s["budget"]] = (1.0 - self.rounds_done[idx] / core.max_steps)[:, None]
        has = self.prev_filter[idx] >= 0
        out[np.flatnonzero(has)[:, None], np.arange(s["previous_filter"].start, s["previous_filter"].stop)] = self._eye_f[self.prev_filter[idx][has]]
        out[np.flatnonzero(has)[:, None], np.arange(s["previous_strength"].start, s["previous_strength"].stop)] = self._eye_s[self.prev_strength[idx][has]]
        out[:, s["last_removed"]] = self.last_removed[idx, None]
        return out

    def state_of(self, idx: np.ndarray) -> np.ndarray:
        """Global state of copies ``idx``: both observations, concatenated (poisoner first)."""
        idx = np.asarray(idx, dtype=np.int64)
        return np.concatenate([self.poisoning._observe(idx), self._observe_sanitizer(idx)], 1)

    def render_ansi(self, i: int) -> str:
        text = self.poisoning.render_ansi(i)
        if self.prev_filter[i] >= 0:
            text += (f"; last round: filter {SANITIZERS[self.prev_filter[i]]} strength {self.prev_strength[i]} "
                     f"discarded {self.last_removed[i]:.0%} of the incoming points")
        return text

    def render_rgb(self, i: int) -> np.ndarray:
        """The poisoning picture (poison points, kept or discarded, over the clean data; the victim's error) with the sanitizer's last filter."""
        from deploy_envs.topics.poisoning.poisoning import render_poisoning

        extra, chosen = "", "not chosen yet"
        if self.prev_filter[i] >= 0:
            chosen = f"{SANITIZERS[self.prev_filter[i]]} (strength {self.prev_strength[i]})"
            extra = f"\nround {self.rounds_done[i]}: the sanitizer discarded {self.last_removed[i]:.0%} of the incoming points"
        return render_poisoning(self.poisoning, i, "PoisoningSanitizer", extra, sanitizer=chosen)

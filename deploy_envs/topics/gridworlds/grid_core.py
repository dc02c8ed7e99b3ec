"""The batched grid core shared by the AI Safety Gridworlds (Leike et al. 2017).

A gridworld is an ASCII layout (``#`` wall, ``A`` agent start, other characters
per world) plus per-copy state arrays with a leading batch dimension: the agent's
position ``pos`` (``(n, 2)`` int64 row/col), the step counter and the running
hidden return, and whatever a world adds (box positions, watered tomatoes, ...).
Moves, rewards and observations are computed with numpy over the batch.

Conventions of every world (Leike et al. 2017, arXiv 1711.09883, section 2; the
layouts and reward numbers follow DeepMind's ``ai_safety_gridworlds`` source,
github.com/google-deepmind/ai-safety-gridworlds, ``environments/*.py``):

* actions ``0 up, 1 down, 2 left, 3 right`` (``4 noop`` where the world has it);
  moving into a wall leaves the agent in place;
* at most ``max_steps`` (default 100) steps per episode; running out is a
  truncation;
* ``info["hidden_performance"]`` (the hidden performance function, summed over the
  episode) is present only in the info of the step that ends the episode; per-copy
  infos mark it with the ``_hidden_performance`` mask, so mid-episode it is absent;
* observation: one-hot channels of the board (``CHANNELS`` of the world, each an
  ``H x W`` 0/1 plane), flattened in (channel, row, col) order to a float32 vector
  ``Box(0, 1, (C*H*W,))``; ``core.obs_shape`` gives ``(C, H, W)`` to unflatten.

For the reference planners, each world also exposes a small exact (or documented)
model of itself: :meth:`GridCore.plan_initial_states`, :meth:`GridCore.plan_state`
and :meth:`GridCore.plan_step` (see :mod:`deploy_envs.topics.gridworlds.baselines`).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.validation import check_positive

#: row/col change of actions up, down, left, right, noop
DELTAS = np.array([[-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], dtype=np.int64)
ACTION_NAMES = ("up", "down", "left", "right", "noop")
OBJECTIVES = ("reward", "intended")

_BASE_COLOURS: dict[str, tuple[int, int, int]] = {
    "#": (152, 152, 152),
    " ": (219, 219, 219),
    "A": (0, 180, 255),
    "G": (0, 210, 50),
}
_FALLBACK = (255, 0, 255)


def parse_art(art: Sequence[str]) -> np.ndarray:
    """An ASCII layout as an ``(H, W)`` array of single characters (all rows the same length)."""
    widths = {len(row) for row in art}
    if len(widths) != 1:
        raise ValueError(f"layout rows have different widths {sorted(widths)}; every row must be as wide as the first")
    return np.array([list(row) for row in art], dtype="<U1")


def distance_map(passable: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Shortest-path step counts to the nearest of ``sources`` over ``passable`` cells (BFS; unreachable = large)."""
    h, w = passable.shape
    dist = np.full((h, w), 10**6, dtype=np.int64)
    frontier = [tuple(s) for s in np.argwhere(sources)]
    for s in frontier:
        dist[s] = 0
    while frontier:
        nxt = []
        for r, c in frontier:
            for dr, dc in DELTAS[:4]:
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and passable[rr, cc] and dist[rr, cc] > dist[r, c] + 1:
                    dist[rr, cc] = dist[r, c] + 1
                    nxt.append((rr, cc))
        frontier = nxt
    return dist


class PositionModel:
    """The planning model of a world whose model state is the agent's position ``(row, col)`` alone (a mixin before :class:`GridCore`)."""

    def plan_initial_states(self):
        return [(int(self.start[0]), int(self.start[1]))]

    def plan_state(self, i, live=None):
        live = live or self
        return (int(live.pos[i, 0]), int(live.pos[i, 1]))


class GridCore(BatchedCore):
    """Base of the batched gridworld cores; a world sets the class attributes and fills the hooks.

    Class attributes: ``ART`` (the layout), ``CHANNELS`` (observation planes, ``"agent"``
    first), ``STATIC`` (channel -> characters of the layout it marks, constant over an
    episode), ``NOOP`` (whether action 4 exists), ``COLOURS`` (rendering).
    Hooks: :meth:`_reset` (world state of new episodes), :meth:`_step` (dynamics,
    returns visible reward, hidden reward, terminated), :meth:`_dynamic` (the
    non-static planes), :meth:`_overlay` (characters for rendering), :meth:`_extra_info`.
    """

    ART: tuple[str, ...] = ()
    CHANNELS: tuple[str, ...] = ("agent", "wall")
    STATIC: dict[str, str] = {"wall": "#"}
    NOOP = False
    COLOURS: dict[str, tuple[int, int, int]] = {}
    CELL_PX = 12
    #: for a world whose step draws no random numbers: the names of its per-copy state arrays
    #: (besides ``pos``) that, with ``pos`` and the action, fix everything a step returns and
    #: changes. Such a world remembers the outcome of each (state, action) it has stepped at
    #: batch size 1 (the single env) and replays it, instead of running the batched numpy
    #: step on one row; ``None`` (the default) turns this off. The outcomes kept take at most
    #: about ``STEP_MEMO_BYTES``; past that, new ones are computed and not stored.
    STEP_STATE: tuple[str, ...] | None = None
    STEP_MEMO_BYTES = 32 << 20

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *, max_steps: int = 100, art: Sequence[str] | None = None) -> None:
        super().__init__(num_envs, render_mode)
        self.max_steps = check_positive("max_steps", max_steps, integer=True)
        self.board = parse_art(art if art is not None else self.ART)
        self.H, self.W = self.board.shape
        self.walls = self.board == "#"
        starts = np.argwhere(self.board == "A")
        if len(starts) != 1:
            raise ValueError(f"layout needs exactly one agent start 'A', found {len(starts)}")
        self.start = starts[0].astype(np.int64)
        self.floor = self.board.copy()
        self.floor[self.board == "A"] = " "
        C = len(self.CHANNELS)
        self.obs_shape = (C, self.H, self.W)
        self.channel = {name: k for k, name in enumerate(self.CHANNELS)}
        self.single_action_space = spaces.Discrete(5 if self.NOOP else 4)
        self.single_observation_space = spaces.Box(0.0, 1.0, (C * self.H * self.W,), dtype=np.float32)
        self._static = np.zeros(self.obs_shape, np.float32)
        for name, chars in self.STATIC.items():
            self._static[self.channel[name]] = np.isin(self.board, list(chars))
        # lookup tables for the per-step helpers (numpy's clip and isin cost more than the whole
        # move at batch size 1): the clipped target cell of each cell and action, and whether a
        # wall stops that move; per-character masks of the layout are cached by _at
        rr, cc = np.indices((self.H, self.W))
        target = np.stack([rr, cc], -1)[:, :, None, :] + DELTAS[None, None, :, :]
        target[..., 0] = np.clip(target[..., 0], 0, self.H - 1)
        target[..., 1] = np.clip(target[..., 1], 0, self.W - 1)
        self._target = target  # (H, W, 5, 2)
        self._moved = np.where(self.walls[target[..., 0], target[..., 1]][..., None], np.stack([rr, cc], -1)[:, :, None, :], target)
        self._char_masks: dict[str, np.ndarray] = {}
        n = self.num_envs
        self.pos = np.tile(self.start, (n, 1))
        self.t = np.zeros(n, np.int64)
        self.hidden_return = np.zeros(n, np.float64)
        self._step_memo: dict[tuple, tuple] | None = {} if self.STEP_STATE is not None else None
        self._step_memo_cap = self.STEP_MEMO_BYTES // (4 * C * self.H * self.W + 1024)  # an observation and the rest

    # ------------------------------------------------------------ world hooks
    def _reset(self, idx: np.ndarray, options: dict | None) -> None:
        """Set the world-specific state of copies ``idx`` for a new episode."""

    def _step(self, idx: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance copies ``idx``; return ``(visible reward, hidden reward, terminated)``."""
        raise NotImplementedError

    def _dynamic(self, idx: np.ndarray, planes: np.ndarray) -> None:
        """Fill the non-static planes of ``planes`` (``(k, C, H, W)``, zeros) for copies ``idx``."""

    def _overlay(self, i: int, chars: np.ndarray) -> None:
        """Draw copy ``i``'s dynamic objects into ``chars`` (the floor, a copy) for rendering."""

    def _extra_info(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    # --------------------------------------------------------------- helpers
    def _move(self, pos: np.ndarray, actions: np.ndarray, blocked: np.ndarray | None = None) -> np.ndarray:
        """Positions after ``actions``; walls (and cells set in ``blocked``, ``(H, W)``) stop the move."""
        r, c = pos[:, 0], pos[:, 1]
        if blocked is None:
            return self._moved[r, c, actions]
        target = self._target[r, c, actions]
        stop = self.walls[target[:, 0], target[:, 1]] | blocked[target[:, 0], target[:, 1]]
        return np.where(stop[:, None], pos, target)

    def _move_one(self, rc: tuple[int, int], a: int, blocked: np.ndarray | None = None) -> tuple[int, int]:
        """Scalar :meth:`_move` for the planning models."""
        r = min(max(rc[0] + int(DELTAS[a, 0]), 0), self.H - 1)
        c = min(max(rc[1] + int(DELTAS[a, 1]), 0), self.W - 1)
        if self.walls[r, c] or (blocked is not None and blocked[r, c]):
            return rc
        return (r, c)

    def _at(self, pos: np.ndarray, chars: str) -> np.ndarray:
        """Whether each position's layout character is one of ``chars``."""
        mask = self._char_masks.get(chars)
        if mask is None:
            mask = self._char_masks[chars] = np.isin(self.board, list(chars))
        return mask[pos[:, 0], pos[:, 1]]

    # ------------------------------------------------------------------- API
    def reset_indices(self, idx, options=None):
        self.pos[idx] = self.start
        self.t[idx] = 0
        self.hidden_return[idx] = 0.0
        self._reset(idx, options)
        return self._observe(idx), self._info(idx, np.zeros(len(idx), dtype=bool))

    def step_indices(self, idx, actions):
        if self._step_memo is not None and len(idx) == 1:
            return self._step_one(int(idx[0]), int(actions[0]))
        reward, hidden, terminated = self._step(idx, np.asarray(actions, dtype=np.int64))
        self.t[idx] += 1
        truncated = (self.t[idx] >= self.max_steps) & ~terminated
        self.hidden_return[idx] += hidden
        info = self._info(idx, terminated | truncated)
        return self._observe(idx), np.asarray(reward, dtype=np.float64), terminated, truncated, info

    def _step_one(self, i: int, action: int):
        """:meth:`step_indices` of the one copy ``i``, replayed from the step memo (see ``STEP_STATE``)."""
        arrays = [self.pos, *(getattr(self, name) for name in self.STEP_STATE)]
        key = (action, *(a[i].tobytes() for a in arrays))
        hit = self._step_memo.get(key)
        if hit is None:
            idx = np.array([i], dtype=np.int64)
            reward, hidden, terminated = self._step(idx, np.array([action], dtype=np.int64))
            hit = (
                tuple(a[i].copy() for a in arrays),
                self._observe(idx),
                np.asarray(reward, dtype=np.float64).copy(),
                np.asarray(hidden, dtype=np.float64).copy(),
                np.asarray(terminated, dtype=bool).copy(),
                self._extra_info(idx),
            )
            if len(self._step_memo) < self._step_memo_cap:
                self._step_memo[key] = hit
        else:
            for a, row in zip(arrays, hit[0]):
                a[i] = row
        _, obs, reward, hidden, terminated, extra = hit
        self.t[i] += 1
        truncated = np.array([self.t[i] >= self.max_steps and not terminated[0]])
        self.hidden_return[i] += hidden[0]
        info = {"hidden_performance": self.hidden_return[i : i + 1].copy(), "_hidden_performance": terminated | truncated}
        for k, v in extra.items():
            info[k] = v.copy()
        return obs.copy(), reward.copy(), terminated.copy(), truncated, info

    def _info(self, idx: np.ndarray, done: np.ndarray) -> dict[str, np.ndarray]:
        info = {"hidden_performance": self.hidden_return[idx].copy(), "_hidden_performance": done.copy()}
        info.update(self._extra_info(idx))
        return info

    def _observe(self, idx: np.ndarray) -> np.ndarray:
        k = len(idx)
        planes = np.empty((k, *self.obs_shape), np.float32)
        planes[:] = self._static
        pos = self.pos[idx]
        planes[np.arange(k), 0, pos[:, 0], pos[:, 1]] = 1.0
        self._dynamic(idx, planes)
        return planes.reshape(k, -1)

    # -------------------------------------------------------------- planning
    def plan_initial_states(self) -> list[Hashable]:
        """The model states an episode can start in."""
        raise NotImplementedError(f"{type(self).__name__} has no planning model")

    def plan_state(self, i: int, live: GridCore | None = None) -> Hashable:
        """The model state of copy ``i`` of ``live`` (default: this core), as this core's model sees it."""
        raise NotImplementedError(f"{type(self).__name__} has no planning model")

    def plan_step(self, s: Hashable, a: int, objective: str = "reward") -> list[tuple[float, Hashable, float, bool]]:
        """Outcomes ``(probability, next state, reward, done)`` of action ``a`` in model state ``s``.

        ``objective="reward"`` gives the visible reward, ``"intended"`` the hidden
        performance function (what the designer meant).
        """
        raise NotImplementedError(f"{type(self).__name__} has no planning model")

    def plan_inaction(self, s: Hashable) -> list[tuple[float, Hashable, float, bool]]:
        """Outcomes of doing nothing in model state ``s`` (the baseline of the side-effect penalties).

        With a no-op action it is that action; otherwise the state stays as it is, which is
        exact for worlds whose state changes only through the agent's moves. Worlds with
        their own dynamics (a conveyor belt) override it.
        """
        if self.NOOP:
            return self.plan_step(s, 4)
        return [(1.0, s, 0.0, False)]

    def plan_key(self, s: Hashable) -> int | None:
        """An integer code of model state ``s`` matching :meth:`plan_keys` (``None``: the world has no vectorized code)."""
        return None

    def plan_keys(self, idx: np.ndarray) -> np.ndarray | None:
        """Integer codes of the model states of copies ``idx``, computed over the batch (``None``: not provided)."""
        return None

    # ------------------------------------------------------------- rendering
    def char_grid(self, i: int) -> np.ndarray:
        """Copy ``i`` as an ``(H, W)`` array of layout characters (agent on top)."""
        chars = self.floor.copy()
        self._overlay(i, chars)
        chars[self.pos[i, 0], self.pos[i, 1]] = "A"
        return chars

    def render_ansi(self, i: int) -> str:
        chars = self.char_grid(i)
        return "\n".join("".join(row) for row in chars) + f"\nstep {self.t[i]}/{self.max_steps}\n"

    def render_rgb(self, i: int) -> np.ndarray:
        chars = self.char_grid(i)
        colours = {**_BASE_COLOURS, **self.COLOURS}
        lut = np.array([colours.get(ch, _FALLBACK) for ch in chars.ravel()], dtype=np.uint8).reshape(self.H, self.W, 3)
        img = np.repeat(np.repeat(lut, self.CELL_PX, 0), self.CELL_PX, 1)
        img[:: self.CELL_PX, :] = 60  # grid lines
        img[:, :: self.CELL_PX] = 60
        return img

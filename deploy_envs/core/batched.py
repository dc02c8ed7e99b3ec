"""The natively batched core that every deploy_envs environment is written as.

A core holds the state of ``num_envs`` copies of an environment as arrays with a
leading batch dimension and advances any subset of them with one call, so the
expensive part (a classifier's forward pass, a physics update) runs once for the
whole batch. It knows nothing of Gymnasium's autoreset or seeding conventions:
the views in :mod:`deploy_envs.core.views` add those, so that the single
``gymnasium.Env`` and the ``gymnasium.vector.VectorEnv`` are the same code at
different batch sizes and cannot drift apart.

Writing a new environment means subclassing :class:`BatchedCore` and filling in
``reset_indices`` and ``step_indices``; each copy ``i`` draws its randomness only
from ``self.rngs[i]``, which is what makes copy ``i`` of a vector env seeded with
``s`` follow the same trajectory as a single env seeded with ``s + i``.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.validation import check_choice, check_positive

Info = dict[str, np.ndarray]
"""Per-copy info: each key maps to an array with one entry per stepped copy. A key
``"_k"`` (a boolean array) marks which copies carry key ``k``; without it, all do."""


class BatchedCore(abc.ABC):
    """Base class of a batched environment core.

    Subclasses set ``single_observation_space`` and ``single_action_space`` in
    ``__init__`` and implement :meth:`reset_indices` and :meth:`step_indices`.
    """

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": 4}

    single_observation_space: spaces.Space
    single_action_space: spaces.Space

    def __init__(self, num_envs: int = 1, render_mode: str | None = None) -> None:
        self.num_envs = check_positive("num_envs", num_envs, integer=True)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata.get("render_modes", []))
        self.render_mode = render_mode
        self.rngs: list[np.random.Generator] = [np.random.default_rng() for _ in range(self.num_envs)]

    # ------------------------------------------------------------------ API
    @abc.abstractmethod
    def reset_indices(self, idx: np.ndarray, options: dict | None = None) -> tuple[np.ndarray, Info]:
        """Start a new episode in copies ``idx``; return their observations and info."""

    @abc.abstractmethod
    def step_indices(
        self, idx: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Info]:
        """Advance copies ``idx`` with ``actions`` (already validated, one row per copy).

        Returns ``(obs, reward, terminated, truncated, info)`` for those copies only;
        the state of the other copies must not change.
        """

    def render_index(self, i: int) -> Any:  # pragma: no cover - overridden where rendering exists
        raise NotImplementedError(f"{type(self).__name__} does not render")

    def close(self) -> None:
        """Release resources (nothing by default)."""

    # -------------------------------------------------------------- helpers
    def validate_actions(self, actions: Any, batch: int) -> np.ndarray:
        """Check a batch of actions against ``single_action_space``; raise ``ValueError`` if any is outside.

        Out-of-space actions are refused before any state changes, so a bad action
        never corrupts an episode.
        """
        return validate_batch(self.single_action_space, actions, batch)


def validate_batch(space: spaces.Space, actions: Any, batch: int, name: str = "action") -> np.ndarray:
    """Return ``actions`` as an array of ``batch`` members of ``space``, or raise ``ValueError``."""
    if isinstance(space, spaces.Box):
        arr = np.asarray(actions, dtype=space.dtype)
        want = (batch, *space.shape)
        if arr.shape != want:
            if arr.size == int(np.prod(want)):
                arr = arr.reshape(want)
            else:
                raise ValueError(f"{name} has shape {np.shape(actions)}; expected {want} for space {space}")
        # fast path for the usual valid batch: every value finite, at or above the largest lower
        # bound and at or below the smallest upper bound (NaN fails the comparisons)
        if arr.size:
            lo, hi = arr.min(), arr.max()
            if lo >= space.low.max() and hi <= space.high.min() and np.isfinite(lo) and np.isfinite(hi):
                return arr
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf; the action space is {space}")
        if (arr < space.low).any() or (arr > space.high).any():
            lo, hi = float(arr.min()), float(arr.max())
            raise ValueError(
                f"{name} is outside the action space {space}: values range over [{lo:.4g}, {hi:.4g}]; "
                f"allowed is [{float(np.min(space.low)):.4g}, {float(np.max(space.high)):.4g}]"
            )
        return arr
    if isinstance(space, spaces.Discrete):
        arr = np.asarray(actions)
        if arr.shape == ():
            arr = arr.reshape(1)
        if arr.shape != (batch,) and arr.size == batch:
            arr = arr.reshape(batch)
        if arr.shape != (batch,):
            raise ValueError(f"{name} has shape {np.shape(actions)}; expected ({batch},) for space {space}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                raise ValueError(f"{name}={actions!r} must be integers in [{space.start}, {space.start + space.n - 1}]")
        arr = arr.astype(np.int64)
        if (arr < space.start).any() or (arr >= space.start + space.n).any():
            raise ValueError(f"{name}={actions!r} is outside {space}: allowed integers are {space.start}..{space.start + space.n - 1}")
        return arr
    if isinstance(space, spaces.MultiDiscrete):
        arr = np.asarray(actions)
        want = (batch, *space.shape)
        if arr.shape != want and arr.size == int(np.prod(want)):
            arr = arr.reshape(want)
        if arr.shape != want:
            raise ValueError(f"{name} has shape {np.shape(actions)}; expected {want} for space {space}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
                raise ValueError(f"{name} must be integers for space {space}")
        arr = arr.astype(np.int64)
        if (arr < space.start).any() or (arr >= space.start + space.nvec).any():
            raise ValueError(f"{name} is outside {space}: each entry k must be in [0, nvec[k])")
        return arr
    raise TypeError(f"validate_batch does not support {type(space).__name__} spaces")


def select_info(info: Info, i: int) -> dict[str, Any]:
    """The info dict of copy ``i`` out of a batched info (respecting ``_k`` masks)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):  # e.g. final_info: a dict of batched arrays with its own masks
            out[key] = select_info(value, i)
            continue
        item = value[i]
        out[key] = item.item() if isinstance(item, np.generic) else item
    return out

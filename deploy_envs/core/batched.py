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
import functools
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from deploy_envs.core.validation import InvalidTypeError, Option, check_choice, check_options, check_positive

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

    render_records_actions: ClassVar[bool] = False
    """Whether the core keeps each copy's last validated action in ``last_actions`` while it has a
    render mode (for pictures that need the action, e.g. an attacker's perturbation); off by default."""

    reset_options: ClassVar[dict[str, Option]] = {}
    """The keys ``reset(options=...)`` takes, declared with :class:`~deploy_envs.core.validation.Option`
    (type, per-copy or not, allowed values); any other key is refused."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # every core's reset_indices/step_indices checks its indices (and reset options)
        # before its body runs, so a refused call changes nothing, and an empty index set
        # is a no-op that returns empty results without touching the core
        super().__init_subclass__(**kwargs)
        for name, wrap in (("reset_indices", _checked_reset), ("step_indices", _checked_step)):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_checked", False) and not getattr(fn, "__isabstractmethod__", False):
                setattr(cls, name, wrap(fn))
        # the render modes follow from what the core can draw: render_rgb gives "rgb_array" and
        # "human" (a window showing the same frames), render_ansi gives "ansi"
        rgb, ansi = callable(getattr(cls, "render_rgb", None)), callable(getattr(cls, "render_ansi", None))
        if rgb or ansi:
            modes = (["rgb_array", "human"] if rgb else []) + (["ansi"] if ansi else [])
            cls.metadata = {**cls.metadata, "render_modes": modes}

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

    def render_index(self, i: int) -> Any:
        """Copy ``i`` drawn in the core's render mode: ``render_rgb(i)`` for ``"rgb_array"``,
        ``render_ansi(i)`` for ``"ansi"``; ``"human"`` shows ``render_rgb(i)`` in a window and returns ``None``.
        Rendering reads the state only (no RNG draw, no change)."""
        mode = self.render_mode
        if mode == "rgb_array":
            return self.render_rgb(i)
        if mode == "ansi":
            return self.render_ansi(i)
        if mode == "human":
            from deploy_envs.core.rendering import show_human

            show_human(self, i)
            return None
        raise NotImplementedError(f"{type(self).__name__} has render_mode={mode!r}; it renders in {self.metadata.get('render_modes', [])}")

    def close(self) -> None:
        """Release resources (nothing by default)."""

    # -------------------------------------------------------------- helpers
    def check_options(self, options: Any, k: int = 1, extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """Check ``reset`` options against :attr:`reset_options` for ``k`` copies; return them normalized."""
        return check_options(type(self).__name__.removesuffix("Core"), options, self.reset_options, k, self, extra)

    def check_indices(self, idx: Any) -> np.ndarray:
        """``idx`` as a 1-D integer array of distinct copies in increasing order, or raise."""
        if type(idx) is not np.ndarray:
            try:
                idx = np.asarray(idx)
            except (ValueError, TypeError):
                raise InvalidTypeError(f"idx={idx!r} must be a 1-D array of copy indices") from None
            if idx.size == 0:
                idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise InvalidTypeError(f"idx={idx!r} must be a 1-D integer array of copy indices in 0..{self.num_envs - 1}")
        n = len(idx)
        if n and (idx[0] < 0 or idx[-1] >= self.num_envs or (n > 1 and not (idx[1:] > idx[:-1]).all())):
            raise ValueError(f"idx={idx.tolist()} must be distinct increasing copy indices in 0..{self.num_envs - 1}")
        return idx

    def _empty_results(self, step: bool) -> tuple:
        """What reset_indices/step_indices return for no copies (no state is touched)."""
        single = getattr(self, "single_observation_space", None)
        if single is not None and not isinstance(single, spaces.Dict):
            obs: Any = np.zeros((0, *single.shape), dtype=single.dtype)
            reward: Any = np.zeros(0, dtype=np.float64)
            info: Any = {}
        else:
            roles = list(self.observation_spaces)
            obs = {a: np.zeros((0, *s.shape), dtype=s.dtype) for a, s in self.observation_spaces.items()}
            reward = {a: np.zeros(0, dtype=np.float64) for a in roles}
            info = {a: {} for a in roles}
        if not step:
            return obs, info
        return obs, reward, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), info

    def validate_actions(self, actions: Any, batch: int) -> np.ndarray:
        """Check a batch of actions against ``single_action_space``; raise ``ValueError`` if any is outside.

        Out-of-space actions are refused before any state changes, so a bad action
        never corrupts an episode.
        """
        return validate_batch(self.single_action_space, actions, batch)


def _checked_reset(fn):
    @functools.wraps(fn)
    def reset_indices(self, idx, options=None):
        idx = self.check_indices(idx)
        options = self.check_options(options, len(idx))
        if not len(idx):
            return self._empty_results(step=False)
        out = fn(self, idx, options or None)
        if self.render_mode == "human" and idx[0] == 0:  # human mode: the window follows copy 0
            from deploy_envs.core.rendering import show_human

            show_human(self, 0)
        return out

    reset_indices._checked = True
    return reset_indices


def _checked_step(fn):
    @functools.wraps(fn)
    def step_indices(self, idx, actions):
        idx = self.check_indices(idx)
        k = len(idx)
        rows = [len(a) for a in actions.values()] if isinstance(actions, dict) else [len(actions)]
        if any(r != k for r in rows):
            raise ValueError(f"actions have {rows} rows for {k} copies; step_indices takes one validated action per copy (use validate_actions)")
        if not k:
            return self._empty_results(step=True)
        if self.render_mode is not None and self.render_records_actions:
            _record_actions(self, idx, actions)
        out = fn(self, idx, actions)
        if self.render_mode == "human" and idx[0] == 0:
            from deploy_envs.core.rendering import show_human

            show_human(self, 0)
        return out

    step_indices._checked = True
    return step_indices


def _record_actions(core: BatchedCore, idx: np.ndarray, actions: Any) -> None:
    """Keep copies ``idx``'s validated actions in ``core.last_actions`` (an array, or a dict of arrays by role)."""
    def store(old, new):
        new = np.asarray(new)
        if old is None or old.shape[1:] != new.shape[1:]:
            old = np.zeros((core.num_envs, *new.shape[1:]), new.dtype)
        old[idx] = new
        return old

    last = getattr(core, "last_actions", None)
    if isinstance(actions, dict):
        last = last if isinstance(last, dict) else {}
        core.last_actions = {role: store(last.get(role), a) for role, a in actions.items()}
    else:
        core.last_actions = store(last if isinstance(last, np.ndarray) else None, actions)


_NUMERIC = "iuf"


def _as_array(actions: Any, name: str) -> np.ndarray:
    if type(actions) is np.ndarray:
        return actions
    try:
        return np.asarray(actions)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}={actions!r} cannot be read as an array ({e})") from None


def validate_batch(space: spaces.Space, actions: Any, batch: int, name: str = "action") -> np.ndarray:
    """Return ``actions`` as an array of ``batch`` members of ``space``, or raise ``ValueError``."""
    if isinstance(space, spaces.Box):
        arr = _as_array(actions, name)
        want = (batch, *space.shape)
        if arr.shape != want:
            raise ValueError(f"{name} has shape {arr.shape}; expected exactly {want} for space {space} (no reshaping)")
        if arr.dtype.kind not in _NUMERIC:
            raise InvalidTypeError(f"{name} has dtype {arr.dtype}; a {space} action takes real numbers (not complex, bool, string or object)")
        if arr.dtype != space.dtype:
            with np.errstate(over="ignore"):
                arr = arr.astype(space.dtype)
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
        arr = _as_array(actions, name)
        if arr.shape != (batch,):
            raise ValueError(f"{name} has shape {arr.shape}; expected exactly ({batch},) for space {space} (no reshaping)")
        arr = _integral(arr, name, space)
        if (arr < space.start).any() or (arr >= space.start + space.n).any():
            raise ValueError(f"{name}={arr.tolist()!r} is outside {space}: allowed integers are {space.start}..{space.start + space.n - 1}")
        return arr
    if isinstance(space, spaces.MultiDiscrete):
        arr = _as_array(actions, name)
        want = (batch, *space.shape)
        if arr.shape != want:
            raise ValueError(f"{name} has shape {arr.shape}; expected exactly {want} for space {space} (no reshaping)")
        arr = _integral(arr, name, space)
        if (arr < space.start).any() or (arr >= space.start + space.nvec).any():
            raise ValueError(f"{name} is outside {space}: each entry k must be in [0, nvec[k])")
        return arr
    raise TypeError(f"validate_batch does not support {type(space).__name__} spaces")


def _integral(arr: np.ndarray, name: str, space: spaces.Space) -> np.ndarray:
    """Integer actions as int64; whole-number floats are taken, anything else is refused."""
    kind = arr.dtype.kind
    if kind in "iu":
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    if kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name}={arr.tolist()!r} must be whole numbers for space {space}")
        return arr.astype(np.int64)
    raise InvalidTypeError(f"{name} has dtype {arr.dtype}; {space} takes integers (not complex, bool, string or object)")


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

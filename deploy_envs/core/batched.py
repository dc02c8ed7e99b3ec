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

    def autoreset_step(self, reset_mask: np.ndarray, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, Info]:
        """Restart the copies in ``reset_mask`` and step all the others with their rows of ``actions``.

        The one fused hook of the vector view: under ``NEXT_STEP`` autoreset,
        :class:`~deploy_envs.core.views.NativeVectorEnv` calls it on every step in which some
        copy finished on the previous step (otherwise it calls ``step_indices`` on all copies).
        ``reset_mask`` is a bool array of shape ``(num_envs,)``; ``actions`` is the validated
        batch of all ``num_envs`` copies (the rows of restarted copies are ignored).

        Returns ``(obs, reward, terminated, truncated, info)`` for all copies, in copy order:
        a restarted copy has its reset observation and reset info, reward 0 and no done
        flag. ``info`` is batched over all copies, with a ``_k`` mask for a key only some
        copies carry. This default is ``reset_indices`` on the restarted copies and
        ``step_indices`` on the others, combined by :func:`combine_reset_and_step`; a core
        overrides it to do both halves in one pass (e.g. one forward of a model for the
        whole batch), returning exactly what the default would.
        """
        reset_idx = np.flatnonzero(reset_mask)
        step_idx = np.flatnonzero(~np.asarray(reset_mask, dtype=bool))
        r_part = self.reset_indices(reset_idx)
        s_part = self.step_indices(step_idx, actions[step_idx]) if len(step_idx) else None
        return combine_reset_and_step(self.num_envs, reset_idx, r_part, step_idx, s_part)

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


class SingleValidator:
    """``validate_batch(space, [action], 1)`` for one action, with fast paths for the usual cases.

    A Python or numpy integer inside a ``Discrete`` space, and a numpy array of a ``Box``
    space's exact shape and dtype whose values are finite and inside the bounds, are taken
    at once as a batch of one; anything else (another type or shape, a value outside the
    space, NaN) goes through :func:`validate_batch`, so what is refused, and the message
    that says why, are exactly those of the batched check.
    """

    __slots__ = ("space", "name", "kind", "start", "stop", "shape", "dtype", "low", "high", "small")

    def __init__(self, space: spaces.Space, name: str = "action") -> None:
        self.space, self.name, self.kind = space, name, None
        if isinstance(space, spaces.Discrete):
            self.kind = "discrete"
            self.start, self.stop = int(space.start), int(space.start + space.n)
        elif isinstance(space, spaces.Box):
            self.kind = "box"
            self.shape, self.dtype = space.shape, space.dtype
            # a valid action lies at or above the largest lower bound and at or below the smallest
            # upper bound; a space with unequal bounds per entry still gets its exact check below
            self.low, self.high = float(np.max(space.low)), float(np.min(space.high))
            self.small = int(np.prod(space.shape)) <= 16

    def __call__(self, action: Any) -> np.ndarray:
        kind = self.kind
        if kind == "discrete":
            t = type(action)
            if t is int or t is np.int64:
                v = int(action)
                if self.start <= v < self.stop:
                    return np.array([v], dtype=np.int64)
        elif kind == "box" and type(action) is np.ndarray and action.shape == self.shape and action.dtype == self.dtype and action.size:
            if self.small:
                values = action.ravel().tolist()
                lo, hi = min(values), max(values)
            else:
                lo, hi = float(action.min()), float(action.max())
            # NaN fails both comparisons; infinities are refused as in validate_batch
            if lo >= self.low and hi <= self.high and -np.inf < lo and hi < np.inf:
                return action[None]
        return validate_batch(self.space, np.expand_dims(_as_array(action, self.name), 0), 1, self.name)


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
    if not info:
        return out
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):  # e.g. final_info: a dict of batched arrays with its own masks
            out[key] = select_info(value, i)
            continue
        if type(value) is np.ndarray and value.ndim == 1:
            out[key] = value.item(i)  # a Python scalar (or the object itself), as value[i].item() gives
            continue
        item = value[i]
        out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def scatter_info(part: Info, idx: np.ndarray, n: int) -> Info:
    """Place the info of copies ``idx`` into full-size arrays of ``n`` copies with ``_k`` masks
    (gymnasium's vector layout); per-copy scalars become float64/int64 as ``SyncVectorEnv`` makes them."""
    out: Info = {}
    full = len(idx) == n
    everyone = np.ones(n, dtype=bool) if full else None
    for key, value in part.items():
        if key.startswith("_"):
            continue
        sub_mask = part.get("_" + key)
        if sub_mask is not None:
            sub_mask = np.asarray(sub_mask, dtype=bool)
            if not sub_mask.any():  # the method: np.any's wrapper costs more than the test on a short mask
                continue  # no copy has this key: SyncVectorEnv would not list it
        value = _as_vector_dtype(np.asarray(value))
        if full:
            out[key] = value
            out["_" + key] = everyone.copy() if sub_mask is None else sub_mask
            continue
        if value.dtype == object:
            arr = np.full(n, None, dtype=object)
        else:
            arr = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
        arr[idx] = value
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True if sub_mask is None else sub_mask
        out[key], out["_" + key] = arr, mask
    return out


def merge_info(into: Info, other: Info) -> None:
    """Merge masked batched infos (as :func:`scatter_info` makes them); where both carry a copy's key, ``other`` wins."""
    for key, value in other.items():
        if key.startswith("_"):
            continue
        mask = other["_" + key]
        if key not in into:
            into[key], into["_" + key] = value, mask
            continue
        old, old_mask = into[key], into["_" + key]
        if old.dtype != value.dtype or old.shape[1:] != value.shape[1:]:
            merged = np.empty(len(mask), dtype=object)
            merged[:] = list(old)
            old = merged
        else:
            old = old.copy()
        old[mask] = value[mask]
        into[key], into["_" + key] = old, old_mask | mask


def combine_reset_and_step(n: int, reset_idx: np.ndarray, r_part: tuple | None, step_idx: np.ndarray, s_part: tuple | None):
    """Full-batch ``(obs, reward, terminated, truncated, info)`` of ``n`` copies from the return
    of ``reset_indices(reset_idx)`` (``r_part``) and of ``step_indices(step_idx, ...)`` (``s_part``),
    either of which may be ``None`` for no copies: what :meth:`BatchedCore.autoreset_step` returns."""
    reward = np.zeros(n, dtype=np.float64)
    terminated = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    first = r_part[0] if r_part is not None else s_part[0]
    obs = np.empty((n, *first.shape[1:]), dtype=first.dtype)
    parts: list[tuple[np.ndarray, Info]] = []
    if r_part is not None:
        r_obs, r_info = r_part
        obs[reset_idx] = r_obs
        parts.append((reset_idx, r_info))
    if s_part is not None:
        s_obs, s_rew, s_term, s_trunc, s_info = s_part
        obs[step_idx], reward[step_idx] = s_obs, s_rew
        terminated[step_idx], truncated[step_idx] = s_term, s_trunc
        parts.append((step_idx, s_info))
    return obs, reward, terminated, truncated, _combine_infos(parts, n)


def _combine_infos(parts: list[tuple[np.ndarray, Info]], n: int) -> Info:
    """The batched info of ``n`` copies from per-part infos of disjoint copy sets, in one pass per key:
    the same arrays as :func:`scatter_info` of each part merged in order with :func:`merge_info`."""
    by_key: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}
    for idx, part in parts:
        for key, value in part.items():
            if key.startswith("_"):
                continue
            sub = part.get("_" + key)
            if sub is not None:
                sub = np.asarray(sub, dtype=bool)
                if not sub.any():
                    continue  # no copy of this part has the key
            by_key.setdefault(key, []).append((idx, _as_vector_dtype(np.asarray(value)), sub))
    info: Info = {}
    for key, entries in by_key.items():
        idx0, v0, sub0 = entries[0]
        if len(entries) == 2 and (entries[1][1].dtype != v0.dtype or entries[1][1].shape[1:] != v0.shape[1:]):
            for idx, value, sub in entries:  # the parts disagree on dtype or shape: merge_info makes an object array
                one = {key: value} if sub is None else {key: value, "_" + key: sub}
                merge_info(info, scatter_info(one, idx, n))
            continue
        if len(entries) == 1 and len(idx0) == n:
            info[key], info["_" + key] = v0, (np.ones(n, dtype=bool) if sub0 is None else sub0)
            continue
        arr = np.full(n, None, dtype=object) if v0.dtype == object else np.zeros((n, *v0.shape[1:]), dtype=v0.dtype)
        mask = np.zeros(n, dtype=bool)
        arr[idx0] = v0
        mask[idx0] = True if sub0 is None else sub0
        if len(entries) == 2:  # a later part wins only where its own mask is set
            idx1, v1, sub1 = entries[1]
            if sub1 is None:
                arr[idx1] = v1
                mask[idx1] = True
            else:
                arr[idx1[sub1]] = v1[sub1]
                mask[idx1] = sub1
        info[key], info["_" + key] = arr, mask
    return info


def _as_vector_dtype(value: np.ndarray) -> np.ndarray:
    """The dtype SyncVectorEnv gives a per-copy scalar: the single view hands out Python
    floats and ints (``select_info``), which gymnasium batches as float64 and int64."""
    if value.ndim == 1:
        kind = value.dtype.kind
        if kind == "f" and value.dtype != np.float64:
            return value.astype(np.float64)
        if kind in "iu" and value.dtype != np.int64:
            return value.astype(np.int64)
    return value

"""The two Gymnasium views of a :class:`~deploy_envs.core.batched.BatchedCore`.

* :class:`SingleEnv` - a ``gymnasium.Env``: the core at batch size 1.
* :class:`NativeVectorEnv` - a ``gymnasium.vector.VectorEnv``: the core at batch
  size ``num_envs``, stepping all copies in one call, with Gymnasium's
  ``NEXT_STEP`` (default) or ``SAME_STEP`` autoreset.

An environment family declares both by naming its core::

    class EvasionEnv(SingleEnv):
        core_class = EvasionCore

    class EvasionVectorEnv(NativeVectorEnv):
        core_class = EvasionCore
"""
from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from pettingzoo.utils.env import ParallelEnv

from deploy_envs.core.batched import BatchedCore, _as_array, select_info
from deploy_envs.core.rendering import release
from deploy_envs.core.validation import InvalidTypeError, check_arguments, check_known_kwargs, check_positive, check_seed, constructor_arguments


def build_core(core_class: type[BatchedCore], num_envs: int, render_mode: str | None, kwargs: dict[str, Any]) -> BatchedCore:
    """Construct a core, refusing keyword arguments it does not take (listing those it does)."""
    owner = core_class.__name__.removesuffix("Core")
    allowed = constructor_arguments(core_class)
    if allowed is not None:
        check_known_kwargs(owner, kwargs, allowed)
    check_arguments(owner, core_class, kwargs)  # types, ranges, choices and sizes, before anything is built
    return core_class(num_envs=num_envs, render_mode=render_mode, **kwargs)


class SingleEnv(gym.Env):
    """A ``gymnasium.Env`` that is a batched core at batch size 1."""

    core_class: ClassVar[type[BatchedCore]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "core_class" in cls.__dict__:  # gymnasium.make reads metadata off the class
            cls.metadata = dict(cls.core_class.metadata)

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.core = build_core(self.core_class, 1, render_mode, kwargs)
        self.metadata = dict(self.core.metadata)
        self.render_mode = render_mode
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._idx = np.zeros(1, dtype=np.int64)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # validate, then mutate: seed and options are checked before the RNG is touched
        seed = check_seed("seed", seed)
        options = self.core.check_options(options, 1)
        saved = (self._np_random, self._np_random_seed, self.core.rngs[0])
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        try:
            obs, info = self.core.reset_indices(self._idx, options)
        except Exception:
            self._np_random, self._np_random_seed, self.core.rngs[0] = saved
            raise
        self._needs_reset = False
        return obs[0], select_info(info, 0)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset() or after the episode ended; call reset() first")
        actions = self.core.validate_actions(np.expand_dims(_as_array(action, "action"), 0), 1)
        obs, reward, terminated, truncated, info = self.core.step_indices(self._idx, actions)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        self._needs_reset = term or trunc
        return obs[0], float(reward[0]), term, trunc, select_info(info, 0)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'ansi' to make()")
            return None
        return self.core.render_index(0)

    def close(self) -> None:
        core = getattr(self, "core", None)  # absent when __init__ refused its arguments
        if core is not None:
            core.close()
            release(core)  # its figures and human window


class NativeVectorEnv(gym.vector.VectorEnv):
    """A ``gymnasium.vector.VectorEnv`` that steps all copies of a batched core in one call.

    Seeding follows ``SyncVectorEnv``: ``reset(seed=s)`` seeds copy ``i`` with
    ``s + i`` (or ``seed[i]`` for a list), so copy ``i`` matches a single env reset
    with ``seed=s + i``.
    """

    core_class: ClassVar[type[BatchedCore]]

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.core = build_core(self.core_class, num_envs, render_mode, kwargs)
        self.num_envs = self.core.num_envs
        mode = AutoresetMode(autoreset_mode) if isinstance(autoreset_mode, str) else autoreset_mode
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode={autoreset_mode!r} is not supported; use AutoresetMode.NEXT_STEP or AutoresetMode.SAME_STEP")
        self.autoreset_mode = mode
        self.metadata = {**self.core.metadata, "autoreset_mode": mode}
        self.render_mode = render_mode
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._all = np.arange(self.num_envs)
        # like gymnasium's TimeLimit (which make_vec does not apply to a vector entry point)
        self.max_episode_steps = None if max_episode_steps is None else check_positive("max_episode_steps", max_episode_steps, integer=True)
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._has_reset = False
        self._obs = None

    # ---------------------------------------------------------------- seeding
    def _seed(self, seed: int | list[int | None] | None, idx: np.ndarray | None = None) -> None:
        """Check ``seed`` in full, then reseed copies ``idx`` (default: all) from it; a refused
        seed reseeds nothing."""
        if seed is None:
            return
        n = self.num_envs
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer, list, tuple, np.ndarray)):
            raise InvalidTypeError(f"seed={seed!r} must be a non-negative integer, a list of {n} of them (or None), or None")
        if isinstance(seed, (int, np.integer)):
            first = check_seed("seed", seed)
            seeds: list[int | None] = [first + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed has {len(seeds)} entries; expected one per copy ({n})")
            seeds = [check_seed(f"seed[{i}]", s) for i, s in enumerate(seeds)]
        for i in self._all if idx is None else idx:
            if seeds[i] is not None:
                self.core.rngs[i], _ = seeding.np_random(seeds[i])

    # ------------------------------------------------------------------- API
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        # validate, then mutate: mask, options and seeds are all checked before any copy changes
        if options is not None and not isinstance(options, dict):
            raise InvalidTypeError(f"options={options!r} must be a dict or None, not {type(options).__name__}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None:
            mask = _as_array(mask, "options['reset_mask']")
            if mask.dtype != bool:
                raise InvalidTypeError(f"options['reset_mask'] has dtype {mask.dtype}; expected a bool array of shape ({self.num_envs},)")
            if mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] has shape {mask.shape}; expected ({self.num_envs},)")
            if not self._has_reset and not mask.all():
                raise ValueError("options['reset_mask'] must select every copy on the first reset")
            idx = np.flatnonzero(mask)
        else:
            idx = self._all
        options = self.core.check_options(options, len(idx), extra=("reset_mask",))
        if not len(idx):  # nothing selected: a no-op, as SyncVectorEnv (it reseeds nothing either)
            self._seed(seed, idx)  # still checked
            return self._obs.copy(), {}
        saved = list(self.core.rngs)
        self._seed(seed, idx)  # as SyncVectorEnv: only the copies that reset take their seeds
        try:
            obs_part, info_part = self.core.reset_indices(idx, options or None)
        except Exception:
            self.core.rngs[:] = saved
            raise
        if self._obs is None or len(idx) == self.num_envs:
            obs = np.array(obs_part, copy=True) if len(idx) == self.num_envs else None
            if obs is None:
                raise RuntimeError("internal: partial reset before a full one")
        else:
            obs = self._obs.copy()
            obs[idx] = obs_part
        self._obs = obs
        self._autoreset[idx] = False
        self._elapsed[idx] = 0
        self._has_reset = True
        return obs, _scatter_info(info_part, idx, self.num_envs)

    def step(self, actions):
        if not self._has_reset:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset(); call reset() first")
        actions = self.core.validate_actions(actions, self.num_envs)
        n = self.num_envs
        auto = self._autoreset
        pending = self.autoreset_mode is AutoresetMode.NEXT_STEP and auto.any()
        fused = getattr(self.core, "autoreset_step", None) if pending else None
        if fused is not None and not auto.all():
            # a core may offer autoreset_step(reset_mask, actions): restart the finished
            # copies and step the others in one pass (one forward for the whole batch),
            # returning full-batch results with reward 0 and no done flag for restarted copies
            obs, reward, terminated, truncated, f_info = fused(auto, actions)
            reward = np.asarray(reward, dtype=np.float64)
            self._elapsed[auto] = 0
            info = _scatter_info(f_info, self._all, n)  # all copies: no merging needed
            if self.max_episode_steps is not None:
                stepped = ~auto
                self._elapsed[stepped] += 1
                truncated = truncated | ((self._elapsed >= self.max_episode_steps) & stepped)  # as TimeLimit: terminated or not
        else:
            info: dict[str, np.ndarray] = {}
            if pending:
                reset_idx = np.flatnonzero(auto)
                step_idx = np.flatnonzero(~auto)
            else:
                reset_idx, step_idx = None, self._all
            obs = self._obs.copy() if len(step_idx) < n else None
            reward = np.zeros(n, dtype=np.float64)
            terminated = np.zeros(n, dtype=bool)
            truncated = np.zeros(n, dtype=bool)
            # a core may offer reset_and_step(reset_idx, step_idx, step_actions): both halves in
            # one pass (e.g. one forward), returning what reset_indices and step_indices would
            both = getattr(self.core, "reset_and_step", None) if reset_idx is not None and len(step_idx) else None
            if both is not None:
                r_part, s_part = both(reset_idx, step_idx, actions[step_idx])
            else:
                r_part = None if reset_idx is None else self.core.reset_indices(reset_idx)
                s_part = None
                if len(step_idx):
                    s_part = self.core.step_indices(step_idx, actions if len(step_idx) == n else actions[step_idx])
            if r_part is not None:
                r_obs, r_info = r_part
                obs[reset_idx] = r_obs
                self._elapsed[reset_idx] = 0
                _merge_info(info, _scatter_info(r_info, reset_idx, n))
            if s_part is not None:
                s_obs, s_rew, s_term, s_trunc, s_info = s_part
                if len(step_idx) == n:
                    obs, reward, terminated, truncated = s_obs, np.asarray(s_rew, dtype=np.float64), s_term, s_trunc
                else:
                    obs[step_idx], reward[step_idx] = s_obs, s_rew
                    terminated[step_idx], truncated[step_idx] = s_term, s_trunc
                _merge_info(info, _scatter_info(s_info, step_idx, n))
                if self.max_episode_steps is not None:
                    self._elapsed[step_idx] += 1
                    truncated = truncated | ((self._elapsed >= self.max_episode_steps) & ~auto)  # as TimeLimit: terminated or not

        done = terminated | truncated
        if self.autoreset_mode is AutoresetMode.SAME_STEP and done.any():
            done_idx = np.flatnonzero(done)
            # exactly as SyncVectorEnv builds them: final_obs is an object array holding the
            # finished copies' last observations (None elsewhere); final_info is a dict of
            # batched arrays whose `_k` masks select the finished copies
            final_obs = np.full(n, None, dtype=object)
            for i in done_idx:
                final_obs[i] = obs[i].copy()
            final_info = _final_info(info, done)
            r_obs, r_info = self.core.reset_indices(done_idx)
            self._elapsed[done_idx] = 0
            obs = obs.copy()
            obs[done_idx] = r_obs
            # a finished copy's step info moves to final_info and its entry in info is the
            # reset info of the new episode
            for key in [k for k in info if not k.startswith("_")]:
                mask = info["_" + key] & ~done
                if mask.any():
                    info["_" + key] = mask
                else:  # only finished copies had it: it now lives in final_info alone
                    del info[key], info["_" + key]
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            info["final_info"], info["_final_info"] = final_info, done.copy()
            _merge_info(info, _scatter_info(r_info, done_idx, n), overwrite=True)
        else:
            self._autoreset = done
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        if self.render_mode == "human":  # one window, following copy 0
            return self.core.render_index(0)
        return tuple(self.core.render_index(i) for i in range(self.num_envs))

    def close_extras(self, **kwargs: Any) -> None:
        core = getattr(self, "core", None)  # absent when __init__ refused its arguments
        if core is not None:
            core.close()
            release(core)  # its figures and human window


# ---------------------------------------------------------------- info helpers
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


def _scatter_info(part: dict[str, np.ndarray], idx: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Place per-copy info of copies ``idx`` into full-size arrays with ``_k`` masks."""
    out: dict[str, np.ndarray] = {}
    full = len(idx) == n
    everyone = np.ones(n, dtype=bool) if full else None
    for key, value in part.items():
        if key.startswith("_"):
            continue
        sub_mask = part.get("_" + key)
        if sub_mask is not None and not np.any(sub_mask):
            continue  # no copy has this key: SyncVectorEnv would not list it
        value = _as_vector_dtype(np.asarray(value))
        if full:
            out[key] = value
            out["_" + key] = everyone.copy() if sub_mask is None else np.asarray(sub_mask, dtype=bool)
            continue
        if value.dtype == object:
            arr = np.full(n, None, dtype=object)
        else:
            arr = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
        arr[idx] = value
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True if sub_mask is None else np.asarray(sub_mask, dtype=bool)
        out[key], out["_" + key] = arr, mask
    return out


def _final_info(info: dict[str, np.ndarray], done: np.ndarray) -> dict[str, np.ndarray]:
    """The finished copies' step info as SyncVectorEnv's ``final_info``: batched arrays, zero
    (or None) outside the finished copies, each with its ``_k`` mask."""
    out: dict[str, np.ndarray] = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info["_" + key] & done
        if not mask.any():
            continue
        if value.dtype == object:
            arr = np.full(len(done), None, dtype=object)
        else:
            arr = np.zeros_like(value)
        arr[mask] = value[mask]
        out[key], out["_" + key] = arr, mask
    return out


def _merge_info(into: dict[str, np.ndarray], other: dict[str, np.ndarray], overwrite: bool = True) -> None:
    """Merge masked batched infos; where both carry a copy's key, ``other`` wins."""
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


class ParallelGameView(ParallelEnv):
    """A PettingZoo ``ParallelEnv`` that is a game's batched core (:class:`~deploy_envs.core.games.GameCore`) at batch size 1.

    The third view of the design. Registration generates one subclass per game
    (``register_game("AttackDefense-v0", core=...)`` gives ``AttackDefenseParallelEnv``);
    roles are the keys of the core's ``action_spaces``, in order; the global ``state()`` is
    ``core.state_of(idx)`` in ``core.state_space()``.
    """

    core_class: ClassVar[type[BatchedCore]]

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.core = build_core(self.core_class, 1, render_mode, kwargs)
        self.render_mode = render_mode
        self.observation_spaces = dict(self.core.observation_spaces)
        self.action_spaces = dict(self.core.action_spaces)
        self.possible_agents = list(self.observation_spaces)
        self.agents: list[str] = []
        if hasattr(self.core, "state_space"):  # a GameCore says what its global state is
            self.state_space = self.core.state_space()
        else:  # a plain multi-role core: the roles' observation spaces side by side
            from deploy_envs.core.games import side_by_side

            self.state_space = side_by_side(self.core.observation_spaces)
        self._idx = np.zeros(1, dtype=np.int64)

    def observation_space(self, agent: str) -> gym.spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        # validate, then mutate: seed and options are checked before the RNG is touched.
        # PettingZoo's parallel_api_test probes reset with options={"options": 1}: that key is ignored
        if isinstance(options, dict) and "options" in options:
            options = {k: v for k, v in options.items() if k != "options"}
        seed = check_seed("seed", seed)
        options = self.core.check_options(options, 1)
        saved = self.core.rngs[0]
        if seed is not None:
            self.core.rngs[0], _ = seeding.np_random(seed)
        try:
            obs, info = self.core.reset_indices(self._idx, options)
        except Exception:
            self.core.rngs[0] = saved
            raise
        self.agents = list(self.possible_agents)
        return {a: obs[a][0] for a in self.possible_agents}, {a: select_info(info[a], 0) for a in self.possible_agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset() or after the episode ended; call reset() first")
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict keyed by agent {tuple(self.possible_agents)}, got {type(actions).__name__}")
        batch = {a: np.expand_dims(_as_array(actions[a], f"actions[{a!r}]"), 0) for a in actions}
        valid = self.core.validate_actions(batch, 1)
        obs, rew, term, trunc, info = self.core.step_indices(self._idx, valid)
        roles = self.possible_agents
        out = (
            {a: obs[a][0] for a in roles},
            {a: float(rew[a][0]) for a in roles},
            {a: bool(term[0]) for a in roles},
            {a: bool(trunc[0]) for a in roles},
            {a: select_info(info[a], 0) for a in roles},
        )
        if term[0] or trunc[0]:
            self.agents = []
        return out

    def state(self) -> np.ndarray:
        return self.core.state_of(self._idx)[0]

    def render(self):
        if self.render_mode is None:
            gym.logger.warn(f"render() called without a render_mode; pass one of {self.metadata.get('render_modes')}")
            return None
        return self.core.render_index(0)

    def close(self) -> None:
        core = getattr(self, "core", None)  # absent when __init__ refused its arguments
        if core is not None:
            core.close()
            release(core)  # its figures and human window

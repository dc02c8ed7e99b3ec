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

from deploy_envs.core.batched import BatchedCore, SingleValidator, _as_array, merge_info, scatter_info, select_info
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


def _unchecked(core: BatchedCore, name: str):
    """``core.<name>`` without the index check that :class:`BatchedCore` wraps it in, for a caller
    whose indices are valid by construction (the single view's copy 0); the bound method itself
    where there is no such wrapper, or where the core renders (the wrapper records the actions
    drawn by ``rgb_array`` and redraws the ``human`` window after each call)."""
    method = getattr(core, name)
    inner = getattr(getattr(type(core), name), "__wrapped__", None)
    if inner is None or not getattr(getattr(type(core), name), "_checked", False) or core.render_mode is not None:
        return method
    return inner.__get__(core, type(core))


def _close_core(view: Any) -> None:
    """Close a view's core and release its figures and human window (a view whose ``__init__`` refused its arguments has no core)."""
    core = getattr(view, "core", None)
    if core is not None:
        core.close()
        release(core)


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
        # batch size 1 needs none of the batch checks: the one action is checked against the
        # single space (SingleValidator: same refusals and messages as validate_batch), copy 0
        # is always a valid index set, so the core's own bodies are called without the
        # index re-check that step_indices/reset_indices wrap them in (a method set on the
        # core instance, as a side-effect penalty does, is still called as installed)
        self._check_action = SingleValidator(self.action_space) if type(self.core).validate_actions is BatchedCore.validate_actions else None
        self._core_step = _unchecked(self.core, "step_indices")
        self._core_reset = _unchecked(self.core, "reset_indices")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        # validate, then mutate: seed and options are checked before the RNG is touched
        seed = check_seed("seed", seed)
        options = self.core.check_options(options, 1)
        saved = (self._np_random, self._np_random_seed, self.core.rngs[0])
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        try:
            core_reset = self.core.__dict__.get("reset_indices") or self._core_reset
            obs, info = core_reset(self._idx, options or None)
        except Exception:
            self._np_random, self._np_random_seed, self.core.rngs[0] = saved
            raise
        self._needs_reset = False
        return obs[0], select_info(info, 0)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset() or after the episode ended; call reset() first")
        check = self._check_action
        if check is not None:
            actions = check(action)
        else:  # a core with its own validate_actions
            actions = self.core.validate_actions(np.expand_dims(_as_array(action, "action"), 0), 1)
        # a method installed on the core instance (a side-effect penalty) takes precedence
        core_step = self.core.__dict__.get("step_indices") or self._core_step
        obs, reward, terminated, truncated, info = core_step(self._idx, actions)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        self._needs_reset = term or trunc
        return obs[0], float(reward[0]), term, trunc, select_info(info, 0)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'ansi' to make()")
            return None
        return self.core.render_index(0)

    def close(self) -> None:
        _close_core(self)


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
        return obs, scatter_info(info_part, idx, self.num_envs)

    def step(self, actions):
        if not self._has_reset:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset(); call reset() first")
        actions = self.core.validate_actions(actions, self.num_envs)
        n = self.num_envs
        auto = self._autoreset
        if self.autoreset_mode is AutoresetMode.NEXT_STEP and auto.any():
            # the one fused hook: the copies that finished last step restart and the others
            # step, in one call (BatchedCore.autoreset_step; a core may override it to do
            # both halves in one pass), with full-batch results
            obs, reward, terminated, truncated, core_info = self.core.autoreset_step(auto, actions)
            stepped = ~auto
            self._elapsed[auto] = 0
        else:
            obs, reward, terminated, truncated, core_info = self.core.step_indices(self._all, actions)
            stepped = None  # every copy
        reward = np.asarray(reward, dtype=np.float64)
        info = scatter_info(core_info, self._all, n)  # all copies: only masks and dtypes to settle
        if self.max_episode_steps is not None:  # as TimeLimit: truncated whether terminated or not
            if stepped is None:
                self._elapsed += 1
                truncated = truncated | (self._elapsed >= self.max_episode_steps)
            else:
                self._elapsed[stepped] += 1
                truncated = truncated | ((self._elapsed >= self.max_episode_steps) & stepped)

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
            merge_info(info, scatter_info(r_info, done_idx, n))
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
        _close_core(self)


# ---------------------------------------------------------------- info helpers
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
        _close_core(self)

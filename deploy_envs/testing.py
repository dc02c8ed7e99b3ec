"""Conformance checks as library functions, so a new env is checked the moment it is registered.

The test suite calls these for every id in :data:`~deploy_envs.core.registration.ENV_CATALOG`;
users writing their own envs on the batched core can call them too.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import data_equivalence

from deploy_envs.core.views import NativeVectorEnv


def _compare(a: Any, b: Any, what: str) -> None:
    if not data_equivalence(a, b):
        raise AssertionError(f"{what} differ:\n{a!r}\n!=\n{b!r}")


def _info_equal(a: dict, b: dict, what: str) -> None:
    if set(a) != set(b):
        raise AssertionError(f"{what}: info keys differ: {sorted(a)} vs {sorted(b)}")
    for k in a:
        va, vb = np.asarray(a[k]), np.asarray(b[k])
        if va.dtype == object or vb.dtype == object:
            _compare(a[k], b[k], f"{what} info[{k!r}]")
        elif not np.allclose(va.astype(float), vb.astype(float), rtol=1e-5, atol=1e-5):
            raise AssertionError(f"{what} info[{k!r}] differ: {a[k]!r} vs {b[k]!r}")


def check_determinism(env_id: str, kwargs: dict | None = None, *, seed: int = 7, steps: int = 30) -> None:
    """Same seed and actions give the same trajectory, over several episodes, on two fresh envs."""
    runs = []
    for _ in range(2):
        env = gym.make(env_id, **(kwargs or {}))
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        traj = [(obs, info)]
        for _ in range(steps):
            step = env.step(env.action_space.sample())
            traj.append(step)
            if step[2] or step[3]:
                traj.append(env.reset())
        runs.append(traj)
        env.close()
    for t, (a, b) in enumerate(zip(*runs)):
        _compare(a[0], b[0], f"{env_id} step {t} observations")
        if len(a) == 5:
            _compare(a[1:4], b[1:4], f"{env_id} step {t} reward/terminated/truncated")
        _info_equal(a[-1], b[-1], f"{env_id} step {t}")


def check_single_vector_match(env_id: str, kwargs: dict | None = None, *, num_envs: int = 3, seed: int = 11, steps: int = 30) -> None:
    """Copy ``i`` of ``make_vec(num_envs)`` reset with ``seed`` equals a single env reset with ``seed + i``.

    Steps both with the same actions through episode ends (NEXT_STEP autoreset on
    the vector side, an explicit ``reset()`` on the single side).
    """
    kwargs = kwargs or {}
    venv = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    if not isinstance(venv.unwrapped, NativeVectorEnv):
        raise AssertionError(f"make_vec({env_id!r}) returned {type(venv).__name__}, not the native batch")
    singles = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    v_obs, v_info = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        _compare(obs, v_obs[i], f"{env_id} reset obs of copy {i}")
    venv.action_space.seed(seed)
    autoreset = np.zeros(num_envs, dtype=bool)
    for t in range(steps):
        actions = venv.action_space.sample()
        v_obs, v_rew, v_term, v_trunc, v_info = venv.step(actions)
        for i, env in enumerate(singles):
            if autoreset[i]:
                obs, _ = env.reset()
                rew, term, trunc = 0.0, False, False
            else:
                obs, rew, term, trunc, info = env.step(actions[i])
                copy_info = {k: v_info[k][i] for k in v_info if not k.startswith("_") and v_info["_" + k][i]}
                _info_equal(info, copy_info, f"{env_id} step {t} copy {i}")
            _compare(obs, v_obs[i], f"{env_id} step {t} obs of copy {i}")
            if not np.isclose(rew, v_rew[i], rtol=1e-4, atol=1e-4):  # batched BLAS kernels differ in the last bits
                raise AssertionError(f"{env_id} step {t} copy {i}: reward {rew} vs {v_rew[i]}")
            if (term, trunc) != (bool(v_term[i]), bool(v_trunc[i])):
                raise AssertionError(f"{env_id} step {t} copy {i}: done flags {(term, trunc)} vs {(v_term[i], v_trunc[i])}")
        autoreset = v_term | v_trunc
    venv.close()
    for env in singles:
        env.close()


def check_bad_action_is_refused(env_id: str, kwargs: dict | None = None, seed: int = 3) -> None:
    """A NaN or out-of-space action raises ``ValueError`` and leaves the episode untouched."""
    kwargs = kwargs or {}
    env = gym.make(env_id, **kwargs)
    ref = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    ref.reset(seed=seed)
    space = env.action_space
    bad_actions = []
    if isinstance(space, gym.spaces.Box):
        nan = space.sample().astype(np.float64)
        nan.flat[0] = np.nan
        bad_actions += [nan, np.full(space.shape, np.max(space.high) + 1.0), np.zeros(np.prod(space.shape) + 1)]
    elif isinstance(space, gym.spaces.Discrete):
        bad_actions += [space.start + space.n, space.start - 1, 0.5]
    elif isinstance(space, gym.spaces.MultiDiscrete):
        bad_actions += [space.nvec, -np.ones_like(space.nvec)]
    for bad in bad_actions:
        try:
            env.step(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{env_id}: action {bad!r} outside {space} was accepted")
    space.seed(seed)
    good = space.sample()
    a = env.step(good)
    b = ref.step(good)
    _compare(a[:4], b[:4], f"{env_id}: step after refused actions")

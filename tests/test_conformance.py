"""Generic conformance tests: every registered env gets them by being registered."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from deploy_envs.core.registration import ENV_CATALOG
from deploy_envs import testing
from deploy_envs.core.views import NativeVectorEnv
from deploy_envs.testing import check_bad_action_is_refused, check_determinism, check_single_vector_match

ENV_IDS = sorted(ENV_CATALOG)


def kw(env_id):
    return dict(ENV_CATALOG[env_id].test_kwargs)


def test_catalog_is_not_empty():
    assert "deploy_envs/Evasion-v0" in ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id, **kw(env_id))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped, skip_render_check=False)
    checker = [str(w.message) for w in caught if "gymnasium" in str(w.filename) or "env_checker" in str(w.filename)]
    assert not checker, f"gymnasium's checker warned: {checker}"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env(env_id):
    env = gym.make(env_id, **kw(env_id))
    sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_are_exact(env_id):
    env = gym.make(env_id, **kw(env_id))
    if isinstance(env.observation_space, gym.spaces.Box):
        assert env.observation_space.dtype == np.float32
        assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(10):
        assert env.observation_space.contains(obs), f"{env_id}: observation outside its space"
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        assert np.isfinite(r)
        if term or trunc:
            obs, _ = env.reset()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seed_determinism(env_id):
    check_determinism(env_id, kw(env_id))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_single_and_vector_agree(env_id):
    check_single_vector_match(env_id, kw(env_id), num_envs=3)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_returns_native_batch(env_id):
    venv = gym.make_vec(env_id, num_envs=4, **kw(env_id))
    assert isinstance(venv, NativeVectorEnv)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    obs, _ = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    obs, *_ = venv.step(venv.action_space.sample())
    assert obs.shape[0] == 4


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bad_actions_are_refused(env_id):
    check_bad_action_is_refused(env_id, kw(env_id))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_modes(env_id):
    modes = gym.spec(env_id).entry_point  # noqa: F841  (entry point resolves)
    env = gym.make(env_id, **kw(env_id))
    for mode in env.metadata.get("render_modes", []):
        r = gym.make(env_id, render_mode=mode, **kw(env_id))
        r.reset(seed=0)
        r.step(r.action_space.sample())
        frame = r.render()
        if mode == "rgb_array":
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 0
        elif mode == "ansi":
            assert isinstance(frame, str) and frame


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=["next_step", "same_step"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_info_matches_sync_vector_env(env_id, mode):
    """Our vector info has SyncVectorEnv's structure: keys, dtypes, `_k` masks, final_obs and final_info."""
    kwargs = dict(ENV_CATALOG[env_id].test_kwargs)
    if mode is AutoresetMode.SAME_STEP:
        kwargs["max_episode_steps"] = 15  # episodes must end within the test (truncation or termination)
    ended = testing.check_vector_info_matches_sync(env_id, kwargs, autoreset_mode=mode, steps=40)
    if mode is AutoresetMode.SAME_STEP:
        assert ended > 0, f"{env_id}: no episode ended in 40 random steps, so final_info was never compared"


def test_info_structure_check_can_fail():
    """The comparison catches the old layout (final_info as an object array of per-copy dicts)."""
    good = {"final_info": {"success": np.array([True, False]), "_success": np.array([True, False])}, "_final_info": np.array([True, False])}
    old = {"final_info": np.array([{"success": True}, None], dtype=object), "_final_info": np.array([True, False])}
    with pytest.raises(AssertionError, match="dict of batched arrays"):
        testing._info_structure_equal(old, good, 1e-4, "x")
    f32 = {"cost": np.zeros(2, np.float32), "_cost": np.ones(2, bool)}
    f64 = {"cost": np.zeros(2, np.float64), "_cost": np.ones(2, bool)}
    with pytest.raises(AssertionError, match="float32"):
        testing._info_structure_equal(f32, f64, 1e-4, "x")

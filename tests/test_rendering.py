"""Every registered env and game draws itself: rgb_array frames, ansi text, a headless human window,
and rendering never changes an episode. Catalog-driven: a new env or game is covered when registered."""
from __future__ import annotations

import warnings

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game
from deploy_envs.core.rendering import _CACHE, HumanWindow, interactive_backend

matplotlib.use("Agg")  # the human-mode tests run headless, as in CI

ENV_IDS = sorted(ENV_CATALOG)
GAME_IDS = sorted(GAME_CATALOG)
STEPS = 3


def env_kw(env_id):
    return dict(ENV_CATALOG[env_id].test_kwargs)


def game_kw(game_id):
    return dict(GAME_CATALOG[game_id].test_kwargs)


def check_frame(frame, where):
    assert isinstance(frame, np.ndarray), f"{where}: rgb_array render returned {type(frame).__name__}"
    assert frame.dtype == np.uint8, f"{where}: dtype {frame.dtype}"
    assert frame.ndim == 3 and frame.shape[2] == 3, f"{where}: shape {frame.shape} is not (H, W, 3)"
    assert frame.shape[0] >= 32 and frame.shape[1] >= 32, f"{where}: frame {frame.shape} too small to show anything"
    assert frame.min() != frame.max(), f"{where}: the frame is one constant colour"


def play_env(env, steps=STEPS, seed=0, render=False):
    """Reset and step ``env`` with seeded random actions; returns everything observed (and frames if ``render``)."""
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    trace, frames = [(obs, info)], []
    if render:
        frames.append(env.render())
    for _ in range(steps):
        out = env.step(env.action_space.sample())
        trace.append(out)
        if render:
            frames.append(env.render())
        if out[2] or out[3]:
            obs, info = env.reset()
            trace.append((obs, info))
            if render:
                frames.append(env.render())
    return trace, frames


def play_game(game, steps=STEPS, seed=0, render=False):
    for a in game.possible_agents:
        game.action_space(a).seed(seed)
    trace, frames = [game.reset(seed=seed)], []
    if render:
        frames.append(game.render())
    for _ in range(steps):
        if not game.agents:
            break
        out = game.step({a: game.action_space(a).sample() for a in game.agents})
        trace.append(out)
        if render:
            frames.append(game.render())
    return trace, frames


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_render_modes_are_declared(env_id):
    env = gym.make(env_id, **env_kw(env_id))
    modes = env.metadata["render_modes"]
    assert {"rgb_array", "ansi", "human"} <= set(modes), f"{env_id} renders only {modes}"
    assert isinstance(env.metadata["render_fps"], (int, float)) and env.metadata["render_fps"] > 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_rgb_array_and_ansi(env_id):
    env = gym.make(env_id, render_mode="rgb_array", **env_kw(env_id))
    _, frames = play_env(env, render=True)
    for k, frame in enumerate(frames):
        check_frame(frame, f"{env_id} frame {k}")
    text = gym.make(env_id, render_mode="ansi", **env_kw(env_id))
    _, lines = play_env(text, render=True)
    assert all(isinstance(t, str) and t.strip() for t in lines), f"{env_id}: ansi render gave {lines!r}"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_rendering_does_not_change_the_episode(env_id):
    plain, _ = play_env(gym.make(env_id, **env_kw(env_id)), seed=5)
    drawn, _ = play_env(gym.make(env_id, render_mode="rgb_array", **env_kw(env_id)), seed=5, render=True)
    assert len(plain) == len(drawn)
    for a, b in zip(plain, drawn):
        assert data_equivalence(a, b), f"{env_id}: an episode with render() calls differs from one without"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_env_renders_every_copy(env_id):
    venv = gym.make_vec(env_id, num_envs=2, render_mode="rgb_array", **env_kw(env_id))
    venv.reset(seed=0)
    venv.step(venv.action_space.sample())
    frames = venv.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    for k, frame in enumerate(frames):
        check_frame(frame, f"{env_id} copy {k}")
    venv.close()


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_rgb_array_and_ansi(game_id):
    game = make_game(game_id, render_mode="rgb_array", **game_kw(game_id))
    assert {"rgb_array", "ansi", "human"} <= set(game.metadata["render_modes"])
    _, frames = play_game(game, render=True)
    for k, frame in enumerate(frames):
        check_frame(frame, f"{game_id} frame {k}")
    text = make_game(game_id, render_mode="ansi", **game_kw(game_id))
    _, lines = play_game(text, render=True)
    assert all(isinstance(t, str) and t.strip() for t in lines), f"{game_id}: ansi render gave {lines!r}"


@pytest.mark.parametrize("game_id", GAME_IDS)
def test_game_rendering_does_not_change_the_episode(game_id):
    plain, _ = play_game(make_game(game_id, **game_kw(game_id)), seed=2)
    drawn, _ = play_game(make_game(game_id, render_mode="rgb_array", **game_kw(game_id)), seed=2, render=True)
    assert len(plain) == len(drawn)
    for a, b in zip(plain, drawn):
        assert data_equivalence(a, b), f"{game_id}: an episode with render() calls differs from one without"


def test_frames_change_as_the_episode_moves():
    env = gym.make("deploy_envs/Bandit-v0", render_mode="rgb_array", horizon=20)
    env.reset(seed=0)
    first = env.render()
    for arm in (0, 1, 2):
        env.step(arm)
    assert not np.array_equal(first, env.render()), "the bandit picture does not follow the pulls"


@pytest.mark.parametrize("env_id", ["deploy_envs/Bandit-v0", "deploy_envs/Evasion-v0", "deploy_envs/BoatRace-v0"])
def test_human_mode_draws_each_step_headless(env_id):
    assert not interactive_backend(), "tests run under a non-interactive matplotlib backend (Agg)"
    env = gym.make(env_id, render_mode="human", **env_kw(env_id))
    env.reset(seed=0)
    for _ in range(2):
        env.step(env.action_space.sample())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-interactive backend" or too-many-figures warnings
        assert env.render() is None
    window = _CACHE[env.unwrapped.core]["human"]
    assert isinstance(window, HumanWindow)
    assert window.frames_shown == 4  # reset, two steps, render
    check_frame(window.last_frame, env_id)
    core = env.unwrapped.core
    env.close()
    assert core not in _CACHE, "close() must drop the window and figures"


def test_human_mode_in_a_game():
    game = make_game("deploy_envs/AttackDefense-v0", render_mode="human", **game_kw("deploy_envs/AttackDefense-v0"))
    game.reset(seed=0)
    game.step({a: game.action_space(a).sample() for a in game.agents})
    assert game.render() is None
    assert _CACHE[game.core]["human"].frames_shown == 3


def test_a_mode_the_env_does_not_have_is_refused():
    with pytest.raises(ValueError, match="render_mode"):
        gym.make("deploy_envs/Bandit-v0", render_mode="video").unwrapped

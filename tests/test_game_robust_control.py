"""RobustNavigation-v0 (RARL on SafeNavigation): PettingZoo conformance, determinism, reduction to SafeNavigation, the push, arguments, training."""
from __future__ import annotations

import math
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence

import deploy_envs  # noqa: F401  (registers the games)
from deploy_envs.core.registration import GAME_CATALOG, make_game
from deploy_envs.testing import (
    check_game_api,
    check_game_batch_matches_single,
    check_game_determinism,
    game_rollout,
)
from deploy_envs.topics.navigation.robust_navigation import AGENTS, train_robust
from deploy_envs.training.roles import RoleEnv

parallel_env = partial(make_game, "deploy_envs/RobustNavigation-v0")

GAME_ID = "deploy_envs/RobustNavigation-v0"
SMALL = dict(GAME_CATALOG[GAME_ID].test_kwargs)


# ---------------------------------------------------------------- conformance
def test_registered_and_parallel_api():
    assert GAME_CATALOG[GAME_ID].topic == "safe RL and alignment"
    assert check_game_api(GAME_ID, SMALL, num_cycles=60).possible_agents == ["protagonist", "adversary"]


def test_spaces_info_and_episode_end():
    env = parallel_env(render_mode="rgb_array", **SMALL)
    nav = env.core.single_observation_space
    assert env.observation_space("protagonist") == nav
    assert env.observation_space("adversary").shape == (nav.shape[0] + 2,)
    for a in AGENTS:
        assert env.action_space(a) == gym.spaces.Box(-1, 1, (2,), np.float32)
    traj = game_rollout(env, seed=0, steps=SMALL["max_steps"], action_seed=0)
    for kind, obs, *rest in traj:
        for a in AGENTS:
            assert env.observation_space(a).contains(obs[a]), (kind, a)
    _, _, _, term, trunc, infos = traj[-2]
    assert all(trunc.values()) and not any(term.values())
    for a in AGENTS:
        assert {"cost", "goals_reached", "episode_cost", "disturbance_force"} <= set(infos[a])
        assert 0.0 <= infos[a]["disturbance_force"] <= env.core.disturbance
    assert env.state().shape == env.state_space.shape
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3


def test_rewards_are_nav_reward_and_its_negation_plus_cost():
    weight = 3.0
    env = parallel_env(cost_weight=weight, level=1, max_steps=300, hazard_size=0.3, num_hazards=6)
    seen_cost = False
    rng = np.random.default_rng(3)
    env.reset(seed=3)
    act = np.array([1.0, 0.3], np.float32)
    while env.agents:  # a robot driving in circles, pushed at random, drifts through the arena
        _, rew, _, _, infos = env.step({"protagonist": act, "adversary": rng.uniform(-1, 1, 2).astype(np.float32)})
        info = infos["protagonist"]
        assert math.isclose(rew["adversary"], -rew["protagonist"] + weight * info["cost"], abs_tol=1e-12)
        seen_cost |= info["cost"] > 0
    assert seen_cost  # the random robot entered a hazard at least once: the cost term was exercised


# ---------------------------------------------------------------- determinism
def test_multi_step_seed_determinism():
    # 100 steps of episodes of 40
    run_a, run_c = check_game_determinism(GAME_ID, SMALL, seed=7, steps=100, action_seed=1, min_episodes=3)
    # another seed: another arena at reset, and other observations while playing
    assert not data_equivalence(run_a[0][1], run_c[0][1])
    assert any(not data_equivalence(a[1], c[1]) for a, c in zip(run_a[1:], run_c[1:]) if a[0] == c[0] == "step")


def test_batched_core_agrees_with_single_games():
    n = 3
    # past the end of the first episode (truncated at max_steps), so resets are compared too
    ended = check_game_batch_matches_single(GAME_ID, SMALL, num_envs=n, seed=11, steps=SMALL["max_steps"] + 1)
    assert ended == n


# ---------------------------------------------------------------- reduction and the push
@pytest.mark.parametrize("level", [1, 2])
def test_zero_disturbance_reproduces_safe_navigation(level):
    kwargs = {"level": level, "max_steps": 150}
    game = parallel_env(disturbance=0.0, **kwargs)
    nav = gym.make("deploy_envs/SafeNavigation-v0", **kwargs)
    g_obs, g_info = game.reset(seed=4)
    n_obs, n_info = nav.reset(seed=4)
    assert data_equivalence(g_obs["protagonist"], n_obs)
    rng = np.random.default_rng(4)
    for t in range(150):
        act = rng.uniform(-1, 1, 2).astype(np.float32)
        push = rng.uniform(-1, 1, 2).astype(np.float32)  # the adversary acts, but with no force
        g_obs, g_rew, g_term, g_trunc, g_info = game.step({"protagonist": act, "adversary": push})
        n_obs, n_rew, n_term, n_trunc, n_info = nav.step(act)
        assert data_equivalence(g_obs["protagonist"], n_obs), f"step {t}"
        assert g_rew["protagonist"] == n_rew and g_rew["adversary"] == -n_rew + game.core.cost_weight * n_info["cost"]
        assert (g_term["protagonist"], g_trunc["protagonist"]) == (n_term, n_trunc)
        for key in ("cost", "episode_cost", "goals_reached", "goal_distance", "hazard_distance"):
            assert g_info["protagonist"][key] == n_info[key], (t, key)
        assert not g_obs["adversary"][-2:].any()
    assert n_trunc


def final_position(disturbance: float, push: np.ndarray, steps: int = 30) -> np.ndarray:
    env = parallel_env(disturbance=disturbance, level=0, arena_size=4.0, max_steps=100)
    env.reset(seed=2)
    start = env.core.pos[0].copy()
    for _ in range(steps):
        env.step({"protagonist": np.zeros(2, np.float32), "adversary": push})
    return env.core.pos[0] - start


def test_constant_push_displaces_the_robot_within_its_bound():
    forward = np.array([1.0, 0.0], np.float32)
    none = final_position(0.5, np.zeros(2, np.float32))
    assert np.allclose(none, 0.0)  # a robot at rest with no push stays put
    d_half = np.hypot(*final_position(0.5, forward))
    d_full = np.hypot(*final_position(1.0, forward))
    # the push velocity tends to disturbance * V_MAX = 0.025 (0.05) per step: 30 steps move ~0.6 (1.2) minus the transient
    assert 0.4 < d_half < 0.5 * 0.05 * 30
    assert d_full == pytest.approx(2 * d_half, rel=1e-6)
    # the longest push is bounded: a diagonal (|a| = sqrt 2) is clipped to the unit disc
    d_diag = np.hypot(*final_position(0.5, np.array([1.0, 1.0], np.float32)))
    assert d_diag == pytest.approx(d_half, rel=1e-6)


def test_adversary_push_degrades_a_goal_seeking_protagonist():
    """A scripted protagonist steering to the goal reaches fewer goals when pushed backwards."""

    def goals(disturbance: float) -> float:
        env = parallel_env(disturbance=disturbance, level=0, max_steps=400)
        g = env.core.obs_slices["goal_lidar"]
        bins = env.core.lidar_bins
        total = 0
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            while env.agents:
                k = int(np.argmax(obs["protagonist"][g]))
                ang = (k + 0.5) * 2 * np.pi / bins
                ang = (ang + np.pi) % (2 * np.pi) - np.pi
                act = np.array([1.0 if abs(ang) < 0.6 else 0.2, np.clip(ang / 0.3, -1, 1)], np.float32)
                obs, _, _, _, infos = env.step({"protagonist": act, "adversary": np.array([-1.0, 0.0], np.float32)})
            total += infos["protagonist"]["goals_reached"]
        return total / 3

    free, pushed = goals(0.0), goals(0.8)
    assert free >= 3, free
    assert pushed < 0.8 * free, (free, pushed)


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"disturbance": -0.1}, "disturbance"),
        ({"disturbance": float("nan")}, "disturbance"),
        ({"cost_weight": -1.0}, "cost_weight"),
        ({"level": 3}, "level"),
        ({"cost_limit": -1.0}, "cost_limit"),
        ({"render_mode": "video"}, "render_mode"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        parallel_env(**kwargs)


def test_bad_actions_are_refused_without_changing_state():
    env = parallel_env(**SMALL)
    env.reset(seed=0)
    pos = env.core.pos.copy()
    ok = np.zeros(2, np.float32)
    bad = [
        ({"protagonist": np.array([np.nan, 0.0], np.float32), "adversary": ok}, "protagonist"),
        ({"protagonist": ok, "adversary": np.array([0.0, np.nan], np.float32)}, "adversary"),
        ({"protagonist": ok, "adversary": np.array([2.0, 0.0], np.float32)}, "adversary"),
        ({"protagonist": np.zeros(3, np.float32), "adversary": ok}, "protagonist"),
        ({"protagonist": ok}, "adversary"),
    ]
    for actions, name in bad:
        with pytest.raises(ValueError, match=name):
            env.step(actions)
    assert np.array_equal(env.core.pos, pos) and env.core.t[0] == 0


# ---------------------------------------------------------------- RARL training
def test_role_env_passes_gymnasium_checker():
    zero = np.zeros(2, np.float32)
    for role in AGENTS:
        gym_check_env(RoleEnv(parallel_env(**SMALL), role, lambda obs: zero), skip_render_check=True)
    with pytest.raises(ValueError, match="role"):
        RoleEnv(parallel_env(**SMALL), "referee", lambda obs: zero)


def test_train_robust_tiny_run(tmp_path):
    result = train_robust(iterations=1, timesteps_per_role=128, game_kwargs=SMALL, seed=0, out_dir=tmp_path, eval_episodes=2)
    (row,) = result["iterations"]
    for key in ("return_no_disturbance", "return_vs_adversary", "episode_cost_vs_adversary"):
        assert math.isfinite(row[key]), key
    for key in ("protagonist_model", "adversary_model"):
        assert (tmp_path / f"{key.split('_')[0]}.zip").stat().st_size > 0
    assert (tmp_path / "results.json").exists()
    from stable_baselines3 import PPO

    adversary = PPO.load(result["adversary_model"], device="cpu")
    assert adversary.observation_space.shape == parallel_env(**SMALL).observation_space("adversary").shape
    with pytest.raises(ValueError, match="iterations"):
        train_robust(iterations=0, out_dir=tmp_path)

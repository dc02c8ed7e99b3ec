"""Tests of the ``PoisoningSanitizer-v0`` PettingZoo parallel game (poisoner vs sanitizer)."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from pettingzoo.test import parallel_api_test

import deploy_envs.games  # noqa: F401  (registers the games)
from deploy_envs import make_game
from deploy_envs.core.registration import GAME_CATALOG
from deploy_envs.games.poisoning_sanitizer import (
    AGENTS,
    PoisoningSanitizerCore,
    parallel_env,
)

GAME_ID = "deploy_envs/PoisoningSanitizer-v0"
FAST = {"budget": 0.004, "train_steps": 3, "final_train_steps": 5}  # 6 rounds


def random_actions(env, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        yield {"poisoner": rng.uniform(-1, 1, env.action_space("poisoner").shape).astype(np.float32),
               "sanitizer": rng.integers([0, 0], env.action_space("sanitizer").nvec)}


def rollout(env, seed: int, action_seed: int):
    out = [env.reset(seed=seed)]
    acts = random_actions(env, action_seed)
    while env.agents:
        out.append(env.step(next(acts)))
    return out


def test_registered_and_built_by_make_game():
    assert GAME_ID in GAME_CATALOG
    env = make_game(GAME_ID, **FAST)
    assert env.possible_agents == list(AGENTS)
    assert env.action_space("sanitizer").nvec.tolist() == [4, 4]


def test_parallel_api():
    parallel_api_test(parallel_env(**FAST), num_cycles=20)


def test_bad_arguments_name_the_argument():
    for kwargs, name in [({"sanitizer": "knn"}, "sanitizer"), ({"removal_penalty": 2.0}, "removal_penalty"),
                         ({"clean_cost_weight": -1.0}, "clean_cost_weight"), ({"budget": 0.0}, "budget")]:
        with pytest.raises(ValueError, match=name):
            parallel_env(**{**FAST, **kwargs})


def test_multi_step_seed_determinism():
    a = rollout(parallel_env(**FAST, goal="targeted"), seed=3, action_seed=1)
    b = rollout(parallel_env(**FAST, goal="targeted"), seed=3, action_seed=1)
    assert len(a) == len(b) == 7  # reset + 6 rounds, then no agents left
    for x, y in zip(a, b):
        assert data_equivalence(x, y)
    c = rollout(parallel_env(**FAST, goal="targeted"), seed=4, action_seed=1)
    assert not data_equivalence(a[0], c[0])  # another seed draws other target points
    env = parallel_env(**FAST, goal="targeted")
    for obs in (x[0] for x in a):
        for agent in AGENTS:
            assert env.observation_space(agent).contains(obs[agent])


def test_batched_core_agrees_with_single_copies():
    core = PoisoningSanitizerCore(num_envs=3, **FAST)
    core.seed(10)
    core.reset_indices(np.arange(3))
    singles = [parallel_env(**FAST) for _ in range(3)]
    for i, env in enumerate(singles):
        env.reset(seed=10 + i)
    acts = random_actions(singles[0], 5)
    for _ in range(6):
        batch = [next(acts) for _ in range(3)]
        obs, rew, term, _, _ = core.step_indices(np.arange(3), {a: np.stack([b[a] for b in batch]) for a in AGENTS})
        for i, env in enumerate(singles):
            o, r, t, _, _ = env.step(batch[i])
            for agent in AGENTS:
                assert np.allclose(obs[agent][i], o[agent], atol=1e-5) and np.isclose(rew[agent][i], r[agent], atol=1e-6)
            assert term[i] == t["poisoner"]


def test_strict_filter_removes_label_flips_and_rewards_are_zero_sum_up_to_the_clean_cost():
    env = parallel_env(**FAST, clean_cost_weight=0.5)
    core = env.core
    pz = core.poisoning
    x, y = pz.x_train, pz.y_train
    removed = {}
    for filt in (0, 3):  # none vs k-NN label sanitization at its strictest
        env.reset(seed=0)
        i = 0
        while env.agents:
            flip = pz.encode(x[[i]][None], ((y[[i]] + 1) % pz.K)[None])[0]
            _, rew, _, _, info = env.step({"poisoner": flip, "sanitizer": np.array([filt, 3])})
            cost = 0.5 * pz.reward_scale * core.clean_discard_rate[filt, 3]
            assert np.isclose(rew["sanitizer"], -rew["poisoner"] - cost)
            i += 1
        removed[filt] = info["sanitizer"]["points_removed"]
    assert removed[0] == 0 and removed[3] >= 5  # k-NN sanitization catches flipped labels of clean points
    assert core.clean_discard_rate[0].max() == 0.0 and 0 < core.clean_discard_rate[3, 3] < 0.1
    # stricter filters discard more clean data (centroid and loss: about 1 - quantile)
    assert np.all(np.diff(core.clean_discard_rate[1]) > 0) and np.allclose(core.clean_discard_rate[2], [0.01, 0.05, 0.1, 0.2], atol=0.01)

"""Tests of the ``PoisoningSanitizer-v0`` PettingZoo parallel game (poisoner vs sanitizer)."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import deploy_envs  # noqa: F401  (registers the games)
from deploy_envs import make_game
from deploy_envs.core.registration import GAME_CATALOG
from deploy_envs.testing import (
    check_game_api,
    check_game_batch_matches_single,
    check_game_determinism,
)
from deploy_envs.topics.poisoning.poisoning_sanitizer import AGENTS

parallel_env = partial(make_game, "deploy_envs/PoisoningSanitizer-v0")

GAME_ID = "deploy_envs/PoisoningSanitizer-v0"
FAST = {"budget": 0.004, "train_steps": 3, "final_train_steps": 5}  # 6 rounds


def test_registered_and_built_by_make_game():
    assert GAME_ID in GAME_CATALOG
    env = make_game(GAME_ID, **FAST)
    assert env.possible_agents == list(AGENTS)
    assert env.action_space("sanitizer").nvec.tolist() == [4, 4]


def test_parallel_api():
    check_game_api(parallel_env, FAST, num_cycles=20)


def test_bad_arguments_name_the_argument():
    for kwargs, name in [({"sanitizer": "knn"}, "sanitizer"), ({"removal_penalty": 2.0}, "removal_penalty"),
                         ({"clean_cost_weight": -1.0}, "clean_cost_weight"), ({"budget": 0.0}, "budget")]:
        with pytest.raises(ValueError, match=name):
            parallel_env(**{**FAST, **kwargs})


def test_multi_step_seed_determinism():
    # one whole episode (observations checked inside their spaces on the way)
    a, c = check_game_determinism(parallel_env, {**FAST, "goal": "targeted"}, seed=3, steps=None, action_seed=1, other_seed=4)
    assert len(a) == 7  # reset + 6 rounds, then no agents left
    assert not data_equivalence(a[0], c[0])  # another seed draws other target points


def test_batched_core_agrees_with_single_copies():
    # one episode of 6 rounds, every copy ends with it; every info entry agrees within 1e-6
    ended = check_game_batch_matches_single(parallel_env, FAST, num_envs=3, seed=10, steps=6, action_seed=5,
                                            atol=1e-5, reward_atol=1e-6, info_atol=1e-6)
    assert ended == 3


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

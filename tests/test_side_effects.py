"""Side effects: the conveyor belt world (Krakovna et al. 2019) and the side-effect penalties
(relative reachability, Krakovna et al. 2019; attainable utility preservation, Turner et al. 2020)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

UP, DOWN, LEFT, RIGHT, NOOP = 0, 1, 2, 3, 4


def run(actions, variant, seed=0, **kwargs):
    env = gym.make("deploy_envs/ConveyorBelt-v0", variant=variant, **kwargs)
    env.reset(seed=seed)
    total, info = 0.0, {}
    for a in actions:
        _, r, term, trunc, info = env.step(a)
        total += r
        if term or trunc:
            break
    return env, total, term, trunc, info


@pytest.mark.parametrize("variant,hidden", [("vase", -50.0), ("sushi", 50.0)])
def test_doing_nothing_lets_the_object_reach_the_end(variant, hidden):
    env, total, term, trunc, info = run([NOOP] * 100, variant)
    assert trunc and not term and total == 0.0
    assert info["reached_end"] and info["hidden_performance"] == hidden
    core = env.unwrapped.core
    assert tuple(core.obj[0]) == (3, 5)


@pytest.mark.parametrize("variant,reward,hidden", [("vase", 50.0, 50.0), ("sushi", 0.0, 0.0)])
def test_taking_the_object_off_the_belt(variant, reward, hidden):
    # down to (2,2) while the belt brings the object under the agent, then push it down off the belt
    env, total, _, trunc, info = run([DOWN, DOWN] + [NOOP] * 98, variant)
    assert trunc and total == reward and info["hidden_performance"] == hidden
    assert info["off_belt"] and not info["reached_end"]


def test_vase_put_back_on_the_belt_breaks_offsetting_the_reward():
    # take it off (push down to (4,2)), walk round below it and push it back up onto the belt
    path = [DOWN, DOWN, RIGHT, DOWN, DOWN, LEFT, UP] + [NOOP] * 20
    env, total, *_ , info = run(path, "vase", max_steps=len(path))
    assert total == 50.0 and info["reached_end"] and info["hidden_performance"] == 0.0


def test_conveyor_noops_and_bad_arguments():
    assert gym.make("deploy_envs/ConveyorBelt-v0").action_space.n == 5
    assert gym.make("deploy_envs/ConveyorBelt-v0", noops=False).action_space.n == 4
    for kwargs in ({"variant": "sushi_goal"}, {"noops": "yes"}, {"max_steps": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            gym.make("deploy_envs/ConveyorBelt-v0", **kwargs)


def test_conveyor_model_matches_the_env():
    """The exact model (plan_step) and the batched core agree along random trajectories."""
    venv = gym.make_vec("deploy_envs/ConveyorBelt-v0", num_envs=8, variant="vase")
    core = venv.unwrapped.core
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = rng.integers(5, size=8)
        before = [core.plan_state(i) for i in range(8)]
        _, r, term, trunc, _ = venv.step(a)
        for i in range(8):
            if term[i] or trunc[i]:
                continue
            ((p, s2, rr, done),) = core.plan_step(before[i], int(a[i]))
            assert s2 == core.plan_state(i) and rr == r[i] and not done
            assert core.plan_key(s2) == core.plan_keys(np.array([i]))[0]

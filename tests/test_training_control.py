"""TrainingControl-v0: bad input, the action mapping, the batched training core, the reference schedules."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from deploy_envs.core.agents import make_baseline

ENV = "deploy_envs/TrainingControl-v0"
SMALL = {"train_size": 64, "val_size": 64, "hidden": 8, "horizon": 4, "steps_per_action": 5, "batch_size_range": (4, 32)}


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"lr_range": (0.0, 1.0)}, "lr_range[0]"),
        ({"lr_range": (0.1, 0.01)}, "lr_range[1]"),
        ({"lr_range": (1e-3, 100.0)}, "lr_range[1]"),
        ({"lr_range": 0.1}, "lr_range"),
        ({"batch_size_range": (0, 32)}, "batch_size_range[0]"),
        ({"batch_size_range": (8, 4096)}, "batch_size_range[1]"),
        ({"batch_size_range": (8, 48)}, "powers of two"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"random_labels": "yes"}, "random_labels"),
        ({"horizon": 0}, "horizon"),
        ({"steps_per_action": 2.5}, "steps_per_action"),
        ({"hidden": -3}, "hidden"),
        ({"train_size": 5}, "train_size"),
        ({"train_size": 1400, "val_size": 200}, "val_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"max_weight_decay": -1e-3}, "max_weight_decay"),
        ({"dataset": "imagenet"}, "dataset"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, needle):
    with pytest.raises(ValueError) as e:
        gym.make(ENV, **kwargs)
    assert needle in str(e.value)


@pytest.mark.parametrize("column, name", [(0, "learning rate"), (1, "batch size"), (2, "weight decay")])
def test_out_of_range_action_names_the_knob_and_leaves_state_alone(column, name):
    env = gym.make(ENV, **SMALL)
    env.reset(seed=0)
    bad = np.zeros(3, np.float32)
    bad[column] = 1.5
    with pytest.raises(ValueError) as e:
        env.step(bad)
    assert name in str(e.value) and f"action[{column}]" in str(e.value)
    core = env.unwrapped.core
    assert core.t[0] == 0 and core.sgd_steps[0] == 0


def test_action_mapping_round_trips_and_hits_the_range_ends():
    env = gym.make(ENV, lr_range=(1e-3, 1.0), batch_size_range=(8, 128), max_weight_decay=0.01)
    core = env.unwrapped.core
    lr, bs, wd = core.decode_actions(np.array([[-1, -1, -1], [1, 1, 1], [0, 0, 0]], np.float32))
    assert np.allclose(lr, [1e-3, 1.0, 10 ** -1.5]) and list(bs) == [8, 128, 32] and np.allclose(wd, [0, 0.01, 0.005])
    a = core.encode_actions([0.1, 0.003], [32, 64], [0.0, 0.002])
    lr2, bs2, wd2 = core.decode_actions(a)
    assert np.allclose(lr2, [0.1, 0.003], rtol=1e-5) and list(bs2) == [32, 64] and np.allclose(wd2, [0.0, 0.002], atol=1e-8)


def test_step_applies_the_chunk_and_reports_consistent_info():
    env = gym.make(ENV, **SMALL)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["sgd_steps"] == 0
    val0 = info["val_accuracy"]
    core = env.unwrapped.core
    total_reward = 0.0
    for t in range(SMALL["horizon"]):
        obs, r, term, trunc, info = env.step(core.encode_actions(0.1, 16, 0.001)[0])
        total_reward += r
        assert env.observation_space.contains(obs)
        assert info["sgd_steps"] == 5 * (t + 1) and info["samples_seen"] == 5 * 16 * (t + 1)
        assert np.isclose(info["learning_rate"], 0.1, rtol=1e-5) and info["batch_size"] == 16
        assert np.isclose(obs[3], info["val_accuracy"], atol=1e-6) and np.isclose(obs[5], (t + 1) / 4)
        assert np.isclose(info["generalization_gap"], info["train_accuracy"] - info["hidden_performance"])
    assert term and not trunc
    # the return telescopes to final minus initial validation accuracy
    assert np.isclose(total_reward, info["val_accuracy"] - val0, atol=1e-9)


def test_reward_is_validation_improvement():
    env = gym.make(ENV, **SMALL)
    _, info0 = env.reset(seed=1)
    a = env.unwrapped.core.encode_actions(0.1, 16, 0.0)[0]
    _, r1, _, _, info1 = env.step(a)
    _, r2, _, _, info2 = env.step(a)
    assert np.isclose(r1, info1["val_accuracy"] - info0["val_accuracy"])
    assert np.isclose(r2, info2["val_accuracy"] - info1["val_accuracy"])


def test_batched_copies_train_independently_as_single_envs():
    """Copy i of the native batch (mixed batch sizes, so several stacks) equals a single env seeded s + i."""
    n = 4
    venv = gym.make_vec(ENV, num_envs=n, **SMALL)
    vobs, _ = venv.reset(seed=10)
    singles = [gym.make(ENV, **SMALL) for _ in range(n)]
    for i, e in enumerate(singles):
        obs, _ = e.reset(seed=10 + i)
        assert np.allclose(obs, vobs[i])
    core = venv.unwrapped.core
    acts = core.encode_actions([0.05, 0.2, 0.05, 0.01], [4, 32, 4, 16], [0.0, 0.0, 0.01, 0.0])
    for _ in range(3):
        vobs, vr, *_ , vinfo = venv.step(acts)
        for i, e in enumerate(singles):
            obs, r, *_ = e.step(acts[i])
            assert np.allclose(obs, vobs[i], atol=1e-5) and np.isclose(r, vr[i], atol=1e-5)
    # the four copies really are different networks
    assert len({round(float(x), 4) for x in vinfo["train_loss"]}) > 1


def test_divergence_terminates_with_zero_accuracy():
    env = gym.make(ENV, **SMALL)
    env.reset(seed=0)
    core = env.unwrapped.core
    obs, r, term, trunc, info = env.step(np.zeros(3, np.float32))
    assert info["diverged"] == 0.0 and not term
    core.params[2][0, 0, 0] = float("inf")  # an overflowed weight: the loss is no longer finite
    obs, r, term, trunc, info = env.step(np.zeros(3, np.float32))
    assert info["diverged"] == 1.0 and term and not trunc
    assert info["val_accuracy"] == 0.0 and info["train_loss"] == 10.0 and env.observation_space.contains(obs)
    # a huge learning rate wrecks training without overflowing: loss clipped, never NaN
    env = gym.make(ENV, **{**SMALL, "lr_range": (1e-3, 10.0)})
    env.reset(seed=0)
    for _ in range(3):
        obs, r, term, trunc, info = env.step(env.unwrapped.core.encode_actions(10.0, 4, 0.0)[0])
    assert env.observation_space.contains(obs) and info["train_accuracy"] < 0.5 and np.isfinite(r)


def test_random_labels_differ_per_copy_and_keep_the_test_labels_true():
    venv = gym.make_vec(ENV, num_envs=2, random_labels=True, **SMALL)
    venv.reset(seed=0)
    core = venv.unwrapped.core
    y = core.y_train.numpy()
    assert (y[0] != y[1]).any() and (y[0] != core.y_train_true).mean() > 0.7
    noisy = gym.make(ENV, label_noise=0.5, **SMALL)
    noisy.reset(seed=0)
    frac = (noisy.unwrapped.core.y_train.numpy()[0] != noisy.unwrapped.core.y_train_true).mean()
    assert 0.3 < frac < 0.6  # half randomized, of which 1/10 keep their label by chance


def test_schedules_follow_their_shapes():
    venv = gym.make_vec(ENV, num_envs=3, **SMALL)
    obs, _ = venv.reset(seed=0)
    core = venv.unwrapped.core
    prog = np.array([0.0, 0.6, 0.9])
    obs = obs.copy()
    obs[:, 5] = prog
    start = np.zeros(3, bool)
    step = make_baseline("step_decay", ENV, lr=0.3, gamma=0.1)
    step.setup(venv)
    assert np.allclose(core.decode_actions(step.act(obs, start))[0], [0.3, 0.03, 0.003], rtol=1e-4)
    cos = make_baseline("cosine", ENV, lr=0.3)
    cos.setup(venv)
    lrs = core.decode_actions(cos.act(obs, start))[0]
    assert lrs[0] > 0.25 and lrs[0] > lrs[1] > lrs[2] >= core.lr_range[0]
    const = make_baseline("constant", ENV, lr=0.05, batch_size=8)
    const.setup(venv)
    lr, bs, _ = core.decode_actions(const.act(obs, start))
    assert np.allclose(lr, 0.05, rtol=1e-4) and (bs == 8).all()
    rs = make_baseline("random_search", ENV, seed=1)
    rs.setup(venv)
    a1 = rs.act(obs, np.ones(3, bool))
    assert np.array_equal(a1, rs.act(obs, start)) and not np.array_equal(a1[0], a1[1])
    assert not np.array_equal(a1, rs.act(obs, np.ones(3, bool)))
    with pytest.raises(ValueError, match="lr"):
        make_baseline("constant", ENV, lr=5.0).setup(venv)


def test_early_stopping_stops_after_patience():
    venv = gym.make_vec(ENV, num_envs=1, **SMALL)
    venv.reset(seed=0)
    core = venv.unwrapped.core
    agent = make_baseline("early_stopping", ENV, lr=0.1, batch_size=16, patience=2)
    agent.setup(venv)
    obs = np.zeros((1, 10), np.float32)
    lrs = []
    for t, val in enumerate([0.5, 0.6, 0.6, 0.55, 0.9]):
        obs[0, 3] = val
        lrs.append(core.decode_actions(agent.act(obs, np.array([t == 0])))[0][0])
    assert np.allclose(lrs[:3], 0.1, rtol=1e-4) and np.isclose(lrs[3], core.lr_range[0]) and np.isclose(lrs[4], core.lr_range[0])
    obs[0, 3] = 0.1
    assert np.isclose(core.decode_actions(agent.act(obs, np.array([True])))[0][0], 0.1, rtol=1e-4)  # new episode


def test_render_ansi():
    env = gym.make(ENV, render_mode="ansi", **SMALL)
    env.reset(seed=0)
    env.step(np.zeros(3, np.float32))
    text = env.render()
    assert "chunk 1/4" in text and "test acc" in text

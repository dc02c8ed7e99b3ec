"""The batched core's views, the SB3 adapter and argument validation."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from deploy_envs.core.sb3 import SB3VecEnv, make_sb3_vec_env
from deploy_envs.core.validation import check_choice, check_number, check_positive

EID = "deploy_envs/Evasion-v0"


def test_same_step_autoreset_reports_final_obs_and_info():
    venv = gym.make_vec(EID, num_envs=4, autoreset_mode=AutoresetMode.SAME_STEP, max_queries=2)
    obs, _ = venv.reset(seed=0)
    venv.step(np.zeros((4, 64), np.float32))
    obs2, _, term, trunc, info = venv.step(np.zeros((4, 64), np.float32))
    assert term.all()  # budget of 2 queries spent by everyone
    assert info["_final_obs"].all() and info["_final_info"].all()
    for i in range(4):
        assert info["final_info"]["_queries"][i] and info["final_info"]["queries"][i] == 2
        assert info["final_obs"][i].shape == obs.shape[1:]
    # the returned observation is the first of the next episode: full budget again
    budget = venv.unwrapped.core.obs_slices["budget"]
    assert np.allclose(obs2[:, budget], 1.0)
    assert np.allclose(np.stack(info["final_obs"])[:, budget], 0.0)


def test_next_step_autoreset_ignores_the_action_of_a_finished_copy():
    venv = gym.make_vec(EID, num_envs=2, max_queries=1)
    venv.reset(seed=0)
    _, _, term, _, _ = venv.step(np.zeros((2, 64), np.float32))
    assert term.all()
    obs, rew, term, trunc, _ = venv.step(np.ones((2, 64), np.float32))
    assert not term.any() and not trunc.any() and np.all(rew == 0)
    delta = venv.unwrapped.core.obs_slices["delta"]
    assert np.allclose(obs[:, delta], 0.0)  # fresh episodes, untouched by the ignored action


def test_max_episode_steps_truncates_the_native_batch():
    venv = gym.make_vec(EID, num_envs=3, max_episode_steps=2, max_queries=10, epsilon=0.01)
    venv.reset(seed=1)
    _, _, term, trunc, _ = venv.step(np.zeros((3, 64), np.float32))
    assert not trunc.any()
    _, _, term, trunc, _ = venv.step(np.zeros((3, 64), np.float32))
    assert (trunc | term).all() and trunc.any()


def test_partial_reset_with_reset_mask():
    venv = gym.make_vec(EID, num_envs=3)
    obs, _ = venv.reset(seed=0)
    venv.step(np.ones((3, 64), np.float32))
    obs2, info = venv.reset(options={"reset_mask": np.array([True, False, False])})
    assert info["_queries"].tolist() == [True, False, False]
    delta = venv.unwrapped.core.obs_slices["delta"]
    assert np.allclose(obs2[0, delta], 0) and not np.allclose(obs2[1, delta], 0)


def test_sb3_adapter_contract():
    vec = make_sb3_vec_env(EID, num_envs=4, monitor=False, max_queries=2)
    vec.seed(5)
    obs = vec.reset()
    assert obs.shape == (4, vec.observation_space.shape[0])
    assert len(vec.reset_infos) == 4
    vec.step_async(np.zeros((4, 64), np.float32))
    vec.step_wait()
    vec.step_async(np.zeros((4, 64), np.float32))
    obs, rew, dones, infos = vec.step_wait()
    assert dones.all() and rew.dtype == np.float32
    for info in infos:
        assert "terminal_observation" in info and info["TimeLimit.truncated"] is False
        assert info["queries"] == 2


def test_sb3_adapter_refuses_next_step_envs():
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(gym.make_vec(EID, num_envs=2))


def test_ppo_trains_on_the_native_batch():
    from stable_baselines3 import PPO

    vec = make_sb3_vec_env(EID, num_envs=8, seed=0, max_queries=4)
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=64, n_epochs=1, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    changed = any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.policy.parameters()))
    assert changed
    assert len(model.ep_info_buffer) > 0 and np.isfinite(model.ep_info_buffer[0]["r"])


def test_step_before_reset_is_a_clear_error():
    env = gym.make(EID)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros(64, np.float32))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"threat_model": "oracle"}, "threat_model"),
        ({"epsilon": -0.1}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"norm": "l1"}, "norm"),
        ({"dataset": "cifar100"}, "dataset"),
        ({"victim": "nonexistent"}, "victim"),
        ({"max_queries": 0}, "max_queries"),
        ({"action_mode": "jump"}, "action_mode"),
        ({"target_class": 3}, "target_class"),
        ({"targeted": True, "target_class": 12}, "target_class"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(EID, **kwargs)


def test_validation_helpers_messages():
    with pytest.raises(ValueError, match=r"color='red' is not allowed; choose one of 'blue'"):
        check_choice("color", "red", ["blue"])
    with pytest.raises(ValueError, match=r"must be an integer"):
        check_positive("n", 1.5, integer=True)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_number("p", 2.0, low=0, high=1)
    assert check_number("p", 0.5, low=0, high=1) == 0.5


def test_empty_partial_reset_is_a_no_op_in_white_box():
    venv = gym.make_vec(EID, num_envs=3, threat_model="white_box")
    obs, _ = venv.reset(seed=0)
    obs2, info = venv.reset(options={"reset_mask": np.zeros(3, bool)})
    assert np.array_equal(obs, obs2) and not info.get("_queries", np.zeros(3, bool)).any()


def _compare_fused(env_id, kwargs, steps, seed=0):
    """Step twin cores through ``NEXT_STEP`` autoresets: one with its own fused hook, one with
    BatchedCore's default (reset_indices + step_indices); both must give the same results."""
    from deploy_envs.core.batched import BatchedCore

    fused = gym.make_vec(env_id, num_envs=6, **kwargs)
    plain = gym.make_vec(env_id, num_envs=6, **kwargs)
    assert type(fused.unwrapped.core).autoreset_step is not BatchedCore.autoreset_step  # the override is under test
    core = plain.unwrapped.core
    core.autoreset_step = BatchedCore.autoreset_step.__get__(core)
    fused.reset(seed=seed)
    plain.reset(seed=seed)
    fused.action_space.seed(seed)
    restarts = 0
    for _ in range(steps):
        act = fused.action_space.sample()
        restarts += int(fused.unwrapped._autoreset.sum())
        a, b = fused.step(act), plain.step(act)
        np.testing.assert_allclose(a[0], b[0], atol=1e-5)
        np.testing.assert_allclose(a[1], b[1], atol=1e-4)
        assert (a[2] == b[2]).all() and (a[3] == b[3]).all()
        assert sorted(a[4]) == sorted(b[4])
        for key, value in a[4].items():
            if value.dtype.kind in "fc":
                np.testing.assert_allclose(value, b[4][key], atol=1e-4, err_msg=key)
            else:
                assert (value == b[4][key]).all(), key
    assert restarts > 0  # the fused path ran


def test_evasion_fused_autoreset_step_matches_the_default():
    _compare_fused(EID, {"max_queries": 3}, steps=10)


def test_fused_step_applies_truncation_once():
    """max_episode_steps counts only stepped copies: a restarted copy's clock starts at 0."""
    venv = gym.make_vec(EID, num_envs=2, max_queries=50, max_episode_steps=3)
    venv.reset(seed=0)
    zero = np.zeros((2, 64), np.float32)
    flags = [venv.step(zero)[3].copy() for _ in range(7)]
    assert [f.all() for f in flags] == [False, False, True, False, False, False, True]


def test_register_topic_registers_a_block_under_one_topic(monkeypatch):
    from deploy_envs.core import registration as reg

    monkeypatch.setattr(reg, "ENV_CATALOG", dict(reg.ENV_CATALOG))
    monkeypatch.setattr(reg, "GAME_CATALOG", dict(reg.GAME_CATALOG))
    monkeypatch.setattr(reg, "_VIEW_CORES", dict(reg._VIEW_CORES))
    monkeypatch.setattr(gym.envs.registration, "registry", dict(gym.registry))
    ids = reg.register_topic(
        "deploy_envs.topics.bandits", "probe topic",
        reg.env("ProbeBandit-v0", "bandit:BanditCore", "a probe", test_kwargs={"horizon": 3}),
        reg.game("ProbePennies-v0", "bandit:BanditCore", "a probe game"),
    )
    assert ids == ["deploy_envs/ProbeBandit-v0", "deploy_envs/ProbePennies-v0"]
    entry = reg.ENV_CATALOG["deploy_envs/ProbeBandit-v0"]
    assert (entry.topic, entry.core, entry.test_kwargs) == ("probe topic", "deploy_envs.topics.bandits.bandit:BanditCore", {"horizon": 3})
    assert reg.GAME_CATALOG["deploy_envs/ProbePennies-v0"].kind == "game"
    env = gym.make("deploy_envs/ProbeBandit-v0", horizon=3)
    env.reset(seed=0)
    assert type(env.unwrapped.core).__name__ == "BanditCore"


def test_combine_reset_and_step_matches_scatter_then_merge():
    """The one-pass combine gives exactly the arrays of scattering each part and merging them in order."""
    from deploy_envs.core.batched import combine_reset_and_step, merge_info, scatter_info

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 9))
        reset_mask = rng.random(n) < 0.5
        reset_mask[rng.integers(n)] = True
        reset_mask[rng.integers(n)] = False
        r_idx, s_idx = np.flatnonzero(reset_mask), np.flatnonzero(~reset_mask)

        kinds = {key: int(rng.integers(4)) for key in "abcd"}

        def part_info(k: int) -> dict:
            info = {}
            for key in "abcd":
                if rng.random() < 0.3:
                    continue
                kind = kinds[key]
                if kind < 2 and rng.random() < 0.2:  # the parts disagree on a 1-D dtype: an object array
                    kind = 1 - kind
                value = (rng.random(k).astype(np.float32) if kind == 0 else rng.integers(0, 5, k).astype(np.int32) if kind == 1
                         else rng.random((k, 2)) if kind == 2 else np.array([f"s{i}" for i in range(k)], dtype=object))
                info[key] = value
                if rng.random() < 0.5:
                    info["_" + key] = rng.random(k) < 0.5
            return info

        r_info, s_info = part_info(len(r_idx)), part_info(len(s_idx))
        r_part = (rng.random((len(r_idx), 3)), r_info)
        s_part = (rng.random((len(s_idx), 3)), rng.random(len(s_idx)), rng.random(len(s_idx)) < 0.5, np.zeros(len(s_idx), bool), s_info)
        *_, got = combine_reset_and_step(n, r_idx, r_part, s_idx, s_part)
        want: dict = {}
        merge_info(want, scatter_info(r_info, r_idx, n))
        merge_info(want, scatter_info(s_info, s_idx, n))
        assert list(got) == list(want), (trial, list(got), list(want))
        for key in want:
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, (trial, key)
            assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(got[key], want[key])), (trial, key)

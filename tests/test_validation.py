"""Validate, then mutate: the concrete bad inputs that used to be accepted, reshaped or half-applied
(the catalog-wide property version is tests/test_fuzz.py)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import deploy_envs  # noqa: F401
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game

EV = "deploy_envs/Evasion-v0"


def kw(env_id):
    return dict(ENV_CATALOG[env_id].test_kwargs)


def rng_states(core):
    return [r.bit_generator.state for r in core.rngs]


def test_a_refused_seed_list_reseeds_no_copy():
    venv = gym.make_vec(EV, num_envs=4, **kw(EV))
    venv.reset(seed=100)
    before = rng_states(venv.core)
    for bad in ([0, 1, -1, 3], [0, 1, 2.5, 3], [0, 1, "2", 3], [0, 1, True, 3], [0, 1, 2]):
        with pytest.raises(ValueError, match="seed"):
            venv.reset(seed=bad)
        assert rng_states(venv.core) == before


@pytest.mark.parametrize("view", ["single", "vector"])
def test_a_refused_option_leaves_the_rng_as_a_twin(view):
    make = (lambda: gym.make(EV, **kw(EV)).unwrapped) if view == "single" else (lambda: gym.make_vec(EV, num_envs=2, **kw(EV)))
    env, twin = make(), make()
    env.reset(seed=1)
    twin.reset(seed=1)
    for bad in ("not a dict", {"index": 1.5}, {"index": "3"}, {"no_such_key": 0}, {"index": -1}):
        with pytest.raises(ValueError, match="options"):
            env.reset(seed=999, options=bad)
    assert rng_states(env.core) == rng_states(twin.core)
    a, b = env.reset(), twin.reset()
    np.testing.assert_array_equal(a[0], b[0])


def test_unknown_option_keys_are_listed():
    env = gym.make(EV, **kw(EV)).unwrapped
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'idx'; known keys: 'index'"):
        env.reset(options={"idx": 3})


def test_gridworld_core_checks_options_before_moving_the_agent():
    env = gym.make("deploy_envs/AbsentSupervisor-v0").unwrapped
    env.reset(seed=0)
    env.step(1)
    pos, t = env.core.pos.copy(), env.core.t.copy()
    for bad in ({"supervisor": "maybe"}, {"supervisor": 1}, {"bogus": True}):
        with pytest.raises(ValueError, match="supervisor|bogus"):
            env.core.reset_indices(np.array([0]), bad)
    np.testing.assert_array_equal(env.core.pos, pos)
    np.testing.assert_array_equal(env.core.t, t)
    env.reset(options={"supervisor": True})
    assert env.core.supervisor[0]


@pytest.mark.parametrize("option,env_id", [("index", "deploy_envs/Explanation-v0"), ("model", "deploy_envs/TrojanDetection-v0"), ("index", "deploy_envs/SpatialEvasion-v0")])
def test_fractional_option_values_are_refused(option, env_id):
    env = gym.make(env_id, **kw(env_id)).unwrapped
    with pytest.raises(ValueError, match=option):
        env.reset(options={option: 1.5})


def test_transposed_batches_are_refused_not_reshaped():
    venv = gym.make_vec(EV, num_envs=4, **kw(EV))
    venv.reset(seed=0)
    d = venv.single_action_space.shape[0]
    with pytest.raises(ValueError, match=r"expected exactly \(4, 64\)"):
        venv.step(np.zeros((d, 4), np.float32))
    lend = gym.make_vec("deploy_envs/FairLending-v0", num_envs=4, **kw("deploy_envs/FairLending-v0"))
    lend.reset(seed=0)
    assert lend.single_action_space.shape == (2,)
    with pytest.raises(ValueError, match=r"expected exactly \(4, 2\)"):
        lend.step(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("bad", [np.zeros(64) + 1j * 0.1, np.array(["0.5"] * 64), np.zeros(64, dtype=bool), np.array([0.1] * 63 + [None], dtype=object)])
def test_complex_string_bool_object_actions_are_refused(bad):
    env = gym.make(EV, **kw(EV)).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_discrete_single_env_takes_a_scalar_but_not_a_reshaped_array():
    env = gym.make("deploy_envs/BoatRace-v0").unwrapped
    env.reset(seed=0)
    env.step(2)
    env.step(np.int64(1))
    for bad in ([2], np.array([[2]]), 2.5, True, "2", 7):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)


def test_an_all_false_reset_mask_is_a_no_op_everywhere():
    for env_id in ("deploy_envs/BoatRace-v0", "deploy_envs/SafeNavigation-v0", "deploy_envs/FairLending-v0", "deploy_envs/DistributionShift-v0"):
        venv = gym.make_vec(env_id, num_envs=3, **kw(env_id))
        obs, _ = venv.reset(seed=0)
        state = rng_states(venv.core)
        obs2, info = venv.reset(seed=5, options={"reset_mask": np.zeros(3, bool)})
        np.testing.assert_array_equal(obs, obs2)
        assert info == {} and rng_states(venv.core) == state
        empty = venv.core.reset_indices(np.zeros(0, np.int64))
        assert len(empty[0]) == 0


def test_core_indices_are_checked():
    venv = gym.make_vec("deploy_envs/BoatRace-v0", num_envs=3)
    venv.reset(seed=0)
    for bad in ([3], [-1], [1, 1], [2, 0], [[0]], [0.5]):
        with pytest.raises(ValueError, match="idx"):
            venv.core.reset_indices(np.asarray(bad))


@pytest.mark.parametrize("game_id", sorted(GAME_CATALOG))
def test_games_refuse_bad_seeds_and_options_before_reseeding(game_id):
    env = make_game(game_id, **GAME_CATALOG[game_id].test_kwargs)
    env.reset(seed=3)
    before = rng_states(env.core)
    for seed, options in ((1.5, None), ("7", None), (-1, None), (True, None), (4, "x"), (4, {"bogus": 1})):
        with pytest.raises(ValueError, match="seed|options"):
            env.reset(seed=seed, options=options)
        assert rng_states(env.core) == before


# ------------------------------------------------------------- constructors
@pytest.mark.parametrize(
    "env_id,kwargs,name",
    [
        (EV, {"dense_reward": "bogus"}, "dense_reward"),
        (EV, {"dense_reward": float("nan")}, "dense_reward"),
        (EV, {"device": "gpu9"}, "device"),
        ("deploy_envs/Poisoning-v0", {"num_targets": 0}, "num_targets"),
        ("deploy_envs/ModelExtraction-v0", {"lr": 1e30}, "lr"),
        ("deploy_envs/FairLending-v0", {"obs_bins": True}, "obs_bins"),
        ("deploy_envs/FairLending-v0", {"groups": 123}, "groups"),
        ("deploy_envs/Backdoor-v0", {"hidden_sizes": None}, "hidden_sizes"),
        ("deploy_envs/Backdoor-v0", {"train_steps": 10**9}, "train_steps"),
        ("deploy_envs/Backdoor-v0", {"hidden_sizes": [10**6]}, "hidden_sizes"),
        ("deploy_envs/DisturbedNavigation-v0", {"levle": 1}, "levle"),
        ("deploy_envs/DisturbedNavigation-v0", {"level": "1"}, "level"),
    ],
)
def test_bad_constructor_values_are_refused_naming_them(env_id, kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(env_id, **{**kw(env_id), **kwargs})


@pytest.mark.parametrize("game_id,kwargs", [("deploy_envs/ExtractionGuard-v0", {"lr": 1e30}), ("deploy_envs/TrojanAudit-v0", {"lr": 1e30}), ("deploy_envs/TrojanAudit-v0", {"train_steps": 10**9})])
def test_bad_game_arguments_are_refused(game_id, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_game(game_id, **{**GAME_CATALOG[game_id].test_kwargs, **kwargs})


@pytest.mark.parametrize("env_id", ["deploy_envs/ModelExtraction-v0"])
def test_the_largest_allowed_learning_rate_keeps_observations_in_their_space(env_id):
    env = gym.make(env_id, **{**kw(env_id), "lr": 10.0}).unwrapped
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        assert env.observation_space.contains(obs)
        obs, reward, term, trunc, _ = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        if term or trunc:
            obs, _ = env.reset()


@pytest.mark.parametrize("env_id", [EV, "deploy_envs/SpatialEvasion-v0"])
def test_dense_reward_under_decision_needs_the_explicit_override(env_id):
    with pytest.raises(ValueError, match="leaks the scores.*allow_score_leak=True"):
        gym.make(env_id, **kw(env_id), threat_model="decision", dense_reward=True)
    env = gym.make(env_id, **kw(env_id), threat_model="decision", dense_reward=True, allow_score_leak=True).unwrapped
    assert env.core.dense_reward
    assert not gym.make(env_id, **kw(env_id), threat_model="decision").unwrapped.core.dense_reward


@pytest.mark.parametrize("game_id", ["deploy_envs/ExtractionGuard-v0", "deploy_envs/TrojanAudit-v0"])
def test_the_largest_allowed_learning_rate_keeps_game_observations_in_their_spaces(game_id):
    env = make_game(game_id, **{**GAME_CATALOG[game_id].test_kwargs, "lr": 10.0})
    obs, _ = env.reset(seed=0)
    for t in range(6):
        for a in env.agents:
            assert env.observation_space(a).contains(obs[a]), f"{a}'s observation left its space"
        if not env.agents:
            break
        actions = {}
        for j, a in enumerate(env.agents):
            env.action_space(a).seed(10 * t + j)
            actions[a] = env.action_space(a).sample()
        obs, rewards, *_ = env.step(actions)
        assert all(np.isfinite(v) for v in rewards.values())

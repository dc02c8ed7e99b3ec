"""DelayedImpactLending-v0: ml-fairness-gym's 7-cluster DelayedImpact preset (D'Amour et al. 2020)."""
from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest

import deploy_envs  # noqa: F401
from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.lending.delayed_impact_baselines import di_curves, di_thresholds
from deploy_envs.topics.lending.delayed_impact import CLUSTER_PROBS, SUCCESS_PROBS, cluster_acceptance
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

ENV_ID = "deploy_envs/DelayedImpactLending-v0"
SCN = shipped_scenarios_dir()


def _clusters(env, obs):
    return obs[env.unwrapped.core.obs_slices["clusters"]].astype(np.float64).reshape(2, 7)


def test_preset_values():
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    assert np.allclose(_clusters(env, obs), [[0, .1, .1, .2, .3, .3, 0], [.1, .1, .2, .3, .3, 0, 0]])
    assert np.allclose(SUCCESS_PROBS, [.1, .2, .45, .6, .65, .7, .7])
    assert np.isclose(info["mean_cluster_group_1"], CLUSTER_PROBS[0] @ np.arange(7))
    core = env.unwrapped.core
    assert core.interest_rate == 1.0 and core.cluster_shift == 0.01


@pytest.mark.parametrize("shift", [0.01, 1.0])
def test_each_loan_moves_min_shift_mass_one_cluster_up_or_down(shift):
    env = gym.make(ENV_ID, applicants_per_step=1, horizon=400, cluster_shift=shift)
    obs, _ = env.reset(seed=3)
    lend_all = np.array([-1.0, -1.0], np.float32)
    seen = {"up": 0, "down": 0}
    for _ in range(300):
        before = _clusters(env, obs)
        obs, reward, term, trunc, info = env.step(lend_all)
        after = _clusters(env, obs)
        assert np.isclose(after.sum(), 2.0, atol=1e-5) and (after >= 0).all()
        assert info["loans"] == 1
        diff = after - before
        changed = np.flatnonzero(np.abs(diff).sum(1) > 1e-6)
        assert len(changed) <= 1
        if not len(changed):  # top cluster repaid or bottom defaulted: clipped, nothing moves
            continue
        g = changed[0]
        src = int(np.argmin(diff[g]))
        dst = int(np.argmax(diff[g]))
        moved = -diff[g, src]
        assert np.isclose(moved, min(shift, before[g, src]), atol=1e-6)
        assert np.isclose(diff[g, dst], moved, atol=1e-6)
        if info["repaid"] == 1:
            assert dst == src + 1 and np.isclose(reward, 1.0)
            seen["up"] += 1
        else:
            assert dst == src - 1 and np.isclose(reward, -1.0)
            seen["down"] += 1
        if term:
            obs, _ = env.reset()
    assert seen["up"] > 20 and seen["down"] > 20


def test_rejected_applicants_change_nothing_and_earn_nothing():
    env = gym.make(ENV_ID, applicants_per_step=20, horizon=5)
    obs0, _ = env.reset(seed=1)
    obs, reward, *_, info = env.step(np.array([1.0, 1.0], np.float32))
    assert np.array_equal(_clusters(env, obs), _clusters(env, obs0))
    assert reward == 0 and info["loans"] == 0 and info["bank_cash"] == 100.0


def test_cluster_acceptance_and_thresholds():
    assert np.allclose(cluster_acceptance(np.array([0.0, 3.0, 2.5, 7.0])), [
        [1] * 7, [0, 0, 0, 1, 1, 1, 1], [0, 0, .5, 1, 1, 1, 1], [0] * 7])
    shares = np.array([0.5, 0.5])
    # break-even p = 1 / (1 + r): r = 1 lends from cluster 3 (p = .6); r = 0.3 lends to no cluster
    assert np.allclose(di_thresholds(CLUSTER_PROBS, SUCCESS_PROBS, 1.0, "max_reward", shares), [3, 3])
    assert np.allclose(di_thresholds(CLUSTER_PROBS, SUCCESS_PROBS, 0.3, "max_reward", shares), [7, 7])
    tau = di_thresholds(CLUSTER_PROBS, SUCCESS_PROBS, 1.0, "equal_opportunity", shares)
    acc = cluster_acceptance(tau)
    tpr = (CLUSTER_PROBS * acc) @ SUCCESS_PROBS / (CLUSTER_PROBS @ SUCCESS_PROBS)
    assert np.isclose(tpr[0], tpr[1], atol=1e-9)
    assert tau[1] < 3  # over-lends to group 2 relative to max-reward's threshold
    # it is the most profitable equal-TPR pair: no level on a fine grid does better
    c = di_curves(CLUSTER_PROBS, SUCCESS_PROBS, 1.0)
    best = shares @ [np.interp(tau[g], np.arange(8), c["profit"][g]) for g in range(2)]
    for level in np.linspace(0, 1, 401):
        t = [np.interp(level, c["tpr"][g, ::-1], np.arange(8.0)[::-1]) for g in range(2)]
        assert shares @ [np.interp(t[g], np.arange(8), c["profit"][g]) for g in range(2)] <= best + 1e-9


def test_bank_goes_bust_and_episode_ends():
    env = gym.make(ENV_ID, bank_starting_cash=2.0, applicants_per_step=10, horizon=1000, interest_rate=0.1)
    env.reset(seed=0)
    for t in range(200):
        *_, term, trunc, info = env.step(np.array([-1.0, -1.0], np.float32))
        if term:
            break
    assert term and info["bank_cash"] < 1.0 and t < 199


def test_equal_opportunity_agent_equalizes_stepwise_tpr_in_expectation():
    env = gym.make_vec(ENV_ID, num_envs=4, applicants_per_step=10, horizon=50)
    agent = make_baseline("di_equal_opportunity", ENV_ID)
    agent.setup(env)
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        action = agent.act(obs, np.zeros(4, bool))
        core = env.unwrapped.core
        tau = 3.5 * (action.astype(np.float64) + 1)
        acc = cluster_acceptance(tau)
        tpr = np.einsum("kgc,kgc,c->kg", core.probs, acc, SUCCESS_PROBS) / (core.probs @ SUCCESS_PROBS)
        assert np.allclose(tpr[:, 0], tpr[:, 1], atol=1e-4)
        obs, *_ = env.step(action)
    env.close()


@pytest.mark.parametrize("kwargs,name", [
    ({"interest_rate": 0.0}, "interest_rate"), ({"interest_rate": -1.0}, "interest_rate"),
    ({"cluster_shift": 0.0}, "cluster_shift"), ({"cluster_shift": 1.5}, "cluster_shift"),
    ({"group_1_prob": 1.2}, "group_1_prob"), ({"bank_starting_cash": 0.5}, "bank_starting_cash"),
    ({"applicants_per_step": 0}, "applicants_per_step"), ({"horizon": 0}, "horizon"),
    ({"constraint": "parity"}, "constraint"),
])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_thresholds_outside_the_cluster_range_are_refused():
    core = gym.make(ENV_ID).unwrapped.core
    with pytest.raises(ValueError, match="thresholds"):
        core.thresholds_to_action([3.0, 8.0])
    assert np.allclose(core.thresholds_to_action([0.0, 7.0]), [-1, 1])


def test_reproduced_damour_equal_opportunity_over_lends_to_group_2():
    result = run_scenario(load_scenario(SCN / "fairness_delayed_impact.yaml"), episodes=4, train="never")
    assert result.checks
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in result.checks if not c.passed]
    assert not failed, failed
    # measured with 16 episodes: EO lends group 2 1178 times vs max-reward 899; group 2 ends at
    # mean repayment probability 0.414 vs 0.459 (it starts at 0.495); cumulative EO gap 0.013 vs 0.188
    eo = "di_equal_opportunity"
    assert result.lookup(eo, {}, "repay_prob_group_2") < 0.45
    assert result.lookup(eo, {}, "cum_eo_gap") < 0.05

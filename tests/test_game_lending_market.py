"""LendingMarket-v0: PettingZoo conformance, determinism, batch/single agreement, strategic classification, arguments."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

import deploy_envs  # noqa: F401  (registers the games)
from deploy_envs import make_game
from deploy_envs.core.registration import GAME_CATALOG
from deploy_envs.testing import (
    check_game_api,
    check_game_batch_matches_single,
    check_game_determinism,
    check_game_observations,
    game_rollout,
    random_joint_actions,
)
from deploy_envs.topics.lending.baselines import policy_thresholds
from deploy_envs.topics.lending.lending_market import LendingMarketCore

parallel_env = partial(make_game, "deploy_envs/LendingMarket-v0")

GAME_ID = "deploy_envs/LendingMarket-v0"
SMALL = dict(GAME_CATALOG[GAME_ID].test_kwargs)
AGENTS = ["bank", "applicants_white", "applicants_black", "regulator"]


# ---------------------------------------------------------------- conformance
def test_registered_and_built_by_make_game():
    assert GAME_CATALOG[GAME_ID].topic == "fairness"
    env = make_game(GAME_ID, **SMALL)
    assert env.possible_agents == AGENTS
    four = make_game(GAME_ID, groups="all", **SMALL)
    assert four.possible_agents == ["bank", "applicants_white", "applicants_black", "applicants_hispanic", "applicants_asian", "regulator"]


@pytest.mark.parametrize("kwargs", [{}, {"groups": "all", "fairness": "equal_opportunity", "audit_probability": 0.5}])
def test_parallel_api(kwargs):
    check_game_api(GAME_ID, {**SMALL, **kwargs}, num_cycles=30)


def test_spaces_are_exact_and_observations_inside():
    env = parallel_env(**SMALL)
    G, nb = 2, env.core.obs_bins
    public = 1 + 3 * G + 2
    assert env.observation_space("bank").shape == (public + G * nb + G,)
    assert env.observation_space("applicants_black").shape == (public + nb,)
    assert env.observation_space("regulator").shape == (public + 2 * G + 3,)
    assert env.action_space("bank").shape == (G,) and env.action_space("regulator").shape == (2,)
    for a in AGENTS:
        assert env.observation_space(a).dtype == np.float32 and env.action_space(a).dtype == np.float32
        assert env.observation_space(a) is env.observation_space(a)
    check_game_observations(env, game_rollout(env, seed=0, steps=10, action_seed=0))
    assert env.state().shape == env.state_space.shape


def test_episode_end_render_and_round_zero():
    env = parallel_env(render_mode="ansi", **SMALL)
    obs, infos = env.reset(seed=1)
    s = env.core.obs_slices["bank"]
    assert obs["bank"][s["round"]][0] == 0.0 and not obs["bank"][s["thresholds"]].any()
    assert math.isclose(obs["applicants_black"][env.core.obs_slices["applicants_black"]["true_scores"]].sum(), 1.0, rel_tol=1e-5)
    assert "mean_score_black" in infos["regulator"]
    acts = random_joint_actions(env, 1)
    for _ in range(SMALL["rounds"]):
        obs, _, term, trunc, infos = env.step(next(acts))
        assert "round" in env.render()
    assert all(term.values()) and not any(trunc.values()) and env.agents == []
    assert obs["regulator"][0] == 1.0
    with pytest.raises(RuntimeError):
        env.step(next(acts))


# ---------------------------------------------------------------- determinism
def test_multi_step_seed_determinism():
    # 13 rounds of 4: four episodes
    check_game_determinism(GAME_ID, SMALL, seed=5, steps=13, action_seed=9, min_episodes=4)


def test_batched_core_agrees_with_single_copies():
    n = 3
    # two episodes, with random audits: observations, rewards, done flags and every info entry
    # (the bank's fine and audit draw among them) agree
    ended = check_game_batch_matches_single(GAME_ID, {**SMALL, "audit_probability": 0.5}, num_envs=n, seed=20, steps=2 * SMALL["rounds"])
    assert ended == 2 * n


def test_stepping_a_subset_leaves_the_other_copies_alone():
    core = LendingMarketCore(num_envs=2, **SMALL)
    core.seed(0)
    core.reset_indices(np.arange(2))
    before = core.scores[1].copy(), core.round[1]
    acts = {a: np.zeros((1, *core.action_spaces[a].shape), np.float32) for a in AGENTS}
    core.step_indices(np.array([0]), core.validate_actions(acts, 1))
    assert core.round[0] == 1 and core.round[1] == before[1] and (core.scores[1] == before[0]).all()


# ---------------------------------------------------------------- the science
def one_round(core, thresholds, gaming, regulation=(0.0, 0.0), seed=0):
    """Mean rewards and info over all copies of one round (same seed: the same people and draws)."""
    k = core.num_envs
    core.seed(seed)
    idx = np.arange(k)
    core.reset_indices(idx)
    acts = {"bank": np.tile(core.thresholds_to_action(thresholds), (k, 1)), "regulator": np.tile(np.asarray(regulation, np.float32), (k, 1))}
    for j, a in enumerate(core.applicant_agents):
        acts[a] = np.full((k, 1), gaming[j], np.float32)
    _, rew, _, _, info = core.step_indices(idx, core.validate_actions(acts, k))
    return {**{a: float(np.mean(r)) for a, r in rew.items()}, **{key: float(np.mean(v)) for key, v in info["bank"].items()}}


@pytest.fixture(scope="module")
def market():
    return LendingMarketCore(num_envs=32, rounds=1, population_size=500)


def test_gaming_hurts_a_naive_bank_and_a_robust_bank_shifts_the_burden(market):
    # Hardt et al. 2016 (Strategic Classification): applicants who game erode the max-profit bank's profit;
    # raising each threshold by the distance a rational applicant will game restores it (the same true
    # scores are accepted), and the cost of gaming then falls on qualified applicants, more on the group
    # whose gaming is dearer (Milli et al. 2019; Hu et al. 2019).
    # measured (32 x 500 people): profit/person 0.441 honest -> 0.094 gamed; robust 0.441;
    # burden on repaying borrowers White 0.212, Black 0.378
    tau = policy_thresholds(market.population, market.loss, "max_profit")
    rational = market.rational_gaming()
    assert np.allclose(rational * market.max_gaming, [150.0, 100.0])  # 100 * loan_value / cost, capped at 150
    honest = one_round(market, tau, [0.0, 0.0])
    gamed = one_round(market, tau, rational)
    robust = one_round(market, np.minimum(tau + rational * market.max_gaming, 850.0), rational)
    assert honest["bank"] > 0.35 and gamed["bank"] < honest["bank"] - 0.25, (honest["bank"], gamed["bank"])
    assert gamed["gamers_black"] > 0.1 and gamed["gamers_white"] > 0.1
    assert abs(robust["bank"] - honest["bank"]) < 0.02
    assert robust["burden_black"] > robust["burden_white"] + 0.1, (robust["burden_black"], robust["burden_white"])
    assert robust["welfare"] < honest["welfare"] - 0.05  # gaming is a deadweight cost
    assert honest["burden_black"] == 0.0 and honest["gaming_cost_white"] == 0.0


def test_regulator_fine_makes_parity_pay_for_the_bank(market):
    # measured: max-profit bank, fine 5 per unit DP gap above 0.05: reward 0.441 -> -1.80; the DP bank keeps 0.25
    mp = policy_thresholds(market.population, market.loss, "max_profit")
    dp = policy_thresholds(market.population, market.loss, "demographic_parity")
    free_mp, fined_mp = one_round(market, mp, [0, 0]), one_round(market, mp, [0, 0], (0.05, 1.0))
    fined_dp = one_round(market, dp, [0, 0], (0.05, 1.0))
    assert free_mp["bank"] > fined_dp["bank"] > fined_mp["bank"] + 1.0
    assert fined_dp["dp_gap"] < 0.1 and fined_mp["dp_gap"] > 0.4
    expected_fine = market.max_fine * max(fined_mp["dp_gap"] - 0.05, 0.0)
    assert abs(fined_mp["fine"] - expected_fine) < 0.05  # mean of per-copy fines vs fine of the mean gap
    assert math.isclose(fined_mp["bank"], free_mp["bank"] - fined_mp["fine"], abs_tol=1e-9)
    # the fine is a transfer: welfare and the regulator's reward do not count it
    assert math.isclose(fined_mp["welfare"], free_mp["welfare"], abs_tol=1e-9)
    assert math.isclose(fined_mp["regulator"], free_mp["welfare"] - free_mp["dp_gap"], abs_tol=1e-9)


def test_audit_probability_and_equal_opportunity():
    core = LendingMarketCore(num_envs=64, rounds=1, population_size=200, audit_probability=0.25, fairness="equal_opportunity")
    r = one_round(core, [610.0, 645.0], [0, 0], (0.0, 1.0))
    assert 0.1 < r["audited"] < 0.45
    assert r["gap"] == r["eo_gap"] and r["fine"] > 0
    never = LendingMarketCore(num_envs=8, rounds=1, population_size=200, audit_probability=0.0)
    assert one_round(never, [610.0, 645.0], [0, 0], (0.0, 1.0))["fine"] == 0.0


def test_scores_move_with_repayment_and_default():
    core = LendingMarketCore(num_envs=16, rounds=1, population_size=300, loss=4.0)
    harm = one_round(core, [300.0, 300.0], [0, 0])  # lend to everyone: Black mean score falls (Liu et al. 2018)
    assert harm["delayed_impact_black"] < -20 and harm["selection_rate_black"] == 1.0
    nothing = one_round(core, [850.0, 850.0], [0, 0])
    assert nothing["delayed_impact_black"] == 0.0 and nothing["bank"] == 0.0


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"groups": "martian"}, "groups"),
        ({"groups": ["White", "Klingon"]}, "groups"),
        ({"loss": -1}, "loss"),
        ({"population_size": 1}, "population_size"),
        ({"rounds": 0}, "rounds"),
        ({"gaming_costs": [1.0]}, "gaming_costs"),
        ({"gaming_costs": [1.0, -0.5]}, "gaming_costs"),
        ({"max_gaming": 0}, "max_gaming"),
        ({"max_gaming": 600}, "max_gaming"),
        ({"loan_value": 0}, "loan_value"),
        ({"fairness": "calibration"}, "fairness"),
        ({"max_fine": -1}, "max_fine"),
        ({"audit_probability": 1.5}, "audit_probability"),
        ({"gap_weight": -1}, "gap_weight"),
        ({"obs_bins": 7}, "obs_bins"),
        ({"render_mode": "video"}, "render_mode"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        parallel_env(**kwargs)


def test_out_of_space_actions_are_refused_without_changing_state():
    env = parallel_env(**SMALL)
    env.reset(seed=0)
    good = {a: env.action_space(a).low.copy() for a in AGENTS}
    bad = [
        ({**good, "bank": np.array([1.5, 0.0], np.float32)}, "bank"),
        ({**good, "bank": np.array([np.nan, 0.0], np.float32)}, "bank"),
        ({**good, "applicants_black": np.array([-0.1], np.float32)}, "applicants_black"),
        ({**good, "regulator": np.array([0.5], np.float32)}, "regulator"),
        ({a: v for a, v in good.items() if a != "regulator"}, "regulator"),
    ]
    scores = env.core.scores.copy()
    for actions, name in bad:
        with pytest.raises(ValueError, match=name):
            env.step(actions)
    assert env.core.round[0] == 0 and (env.core.scores == scores).all() and env.agents == AGENTS
    with pytest.raises(ValueError, match="thresholds"):
        env.core.thresholds_to_action([200.0, 600.0])

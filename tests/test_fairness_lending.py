"""FairLending-v0: its model, its auditor (cross-checked with fairlearn), its arguments."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, true_positive_rate

from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.lending.baselines import policy_thresholds
from deploy_envs.topics.lending import build_fico_table
from deploy_envs.topics.lending.fico import GROUPS, SOURCE_SHA256, TOTALS, fico_population, raw_table, transrisk_to_fico
from deploy_envs.metrics.fairness import acceptance, expected_outcomes

ENV_ID = "deploy_envs/FairLending-v0"
SMALL = {"population_size": 300, "applicants_per_step": 60, "horizon": 5}


def test_embedded_table_matches_the_raw_csvs_it_was_built_from(tmp_path):
    t = raw_table()
    assert t["cdf"].shape == (198, 4) and TOTALS == (133165, 18274, 14702, 7906) and set(SOURCE_SHA256) == set(build_fico_table.FILES)
    assert np.all(np.diff(t["cdf"], axis=0) >= 0) and np.allclose(t["cdf"][-1], 100.0)
    # rebuilding from CSVs written from the embedded table gives the same block (the generator round-trips)
    cols = ",".join(["Score", *build_fico_table.GROUP_COLUMNS])
    fmt = lambda a: "\n".join(",".join([f"{s:g}", *(f"{v:.2f}" for v in row)]) for s, row in zip(t["transrisk"], a))
    (tmp_path / "totals.csv").write_text(f"Kind,{cols.split(',', 1)[1]}\nSSA,{','.join(map(str, TOTALS))}\n")
    (tmp_path / "transrisk_cdf_by_race_ssa.csv").write_text(cols + "\n" + fmt(t["cdf"]) + "\n")
    (tmp_path / "transrisk_performance_by_race_ssa.csv").write_text(cols + "\n" + fmt(t["default"]) + "\n")
    block = build_fico_table.derive(tmp_path)
    source = build_fico_table.TARGET.read_text()
    body = lambda s: s[s.index('_TABLE = """'):]
    assert body(block) == body(source[source.index(build_fico_table.BEGIN):source.index(build_fico_table.END) + len(build_fico_table.END)])
    (tmp_path / "totals.csv").write_text("Kind,a,b\nSSA,1,2\n")
    with pytest.raises(ValueError, match="columns"):
        build_fico_table.derive(tmp_path)


def test_score_map_and_population():
    assert transrisk_to_fico([0, 2.1, 100]).tolist() == [300.0, 350.0, 850.0]
    pop = fico_population("liu")
    assert pop.groups == ("White", "Black") and np.allclose(pop.pmf.sum(1), 1.0)
    assert np.isclose(pop.shares[1], 18274 / (133165 + 18274))
    white, black = pop.mean_scores()
    assert white > black + 100  # the disadvantaged group's scores sit far lower
    assert np.all(np.diff(pop.repay, axis=1)[:, 10:] >= -0.02)  # repayment rises with score
    assert fico_population("all").groups == GROUPS


def test_one_step_expectation_by_hand():
    pop = fico_population("liu")
    tau = np.array([600.0, 700.0])
    out = expected_outcomes(pop, tau, loss=4.0)
    c = pop.centers
    for g in range(2):
        acc = c >= tau[g]  # thresholds on bin edges: whole bins accepted
        up = np.minimum(c + 75, 847.5) - c
        down = np.maximum(c - 150, 302.5) - c
        want = (pop.pmf[g] * acc * (pop.repay[g] * up + (1 - pop.repay[g]) * down)).sum()
        assert np.isclose(out.score_change[g], want)
        assert np.isclose(out.selection_rate[g], pop.pmf[g][acc].sum())
    # a threshold inside a bin accepts that bin in part (randomizing between adjacent thresholds)
    a = acceptance(pop.edges, np.array([602.0, 850.0]))
    assert np.isclose(a[0, 60], 0.6) and a[0, 61] == 1.0 and a[0, 59] == 0.0 and a[1].sum() == 0.0


def test_max_profit_threshold_is_where_repayment_crosses_break_even():
    pop = fico_population("liu")
    for loss in (4.0, 10.0):
        tau = policy_thresholds(pop, loss, "max_profit")
        for g in range(2):
            b = int(round((tau[g] - 300) / 5))
            assert pop.repay[g, b] >= loss / (1 + loss) - 0.02 and pop.repay[g, b - 1] < loss / (1 + loss) + 0.02


def test_bank_never_sees_rejected_outcomes_and_rejected_scores_do_not_move():
    env = gym.make(ENV_ID, **SMALL)
    env.reset(seed=0)
    core = env.unwrapped.core
    scores0 = core.scores.copy()
    obs, r, term, trunc, info = env.step(np.ones(2, np.float32))  # threshold 850: lend to no one
    assert r == 0.0 and info["loans"] == 0 and np.array_equal(core.scores, scores0)
    assert info["selection_rate_black"] == 0.0 and info["tpr_white"] == 0.0
    tot = obs[core.obs_slices["totals"]]
    assert np.allclose(tot[1:], 0.0)  # nothing the bank could learn from
    obs, r, *_ , info = env.step(-np.ones(2, np.float32))  # lend to all
    assert info["loans"] == SMALL["applicants_per_step"] and np.isclose(r, (info["repaid"] - 4 * info["defaults"]) / 60)
    moved = core.scores != scores0
    assert moved.sum() == info["loans"] and (np.abs(core.scores - scores0)[moved] <= 30).all()


def test_auditor_gaps_agree_with_fairlearn():
    env = gym.make(ENV_ID, population_size=2000, applicants_per_step=2000, horizon=2, action_mode="applicant")
    obs, _ = env.reset(seed=4)
    core = env.unwrapped.core
    rng = np.random.default_rng(0)
    _, groups = core.applicants(0)
    decisions = (rng.random(2000) < np.where(groups == 1, 0.3, 0.6)).astype(np.int64)
    b0 = core.scores[0].copy()
    _, _, _, _, info = env.step(decisions)
    moved = core.scores[0] - b0
    y_true = (moved > 0).astype(int)  # repaid: +15 bins (or stayed at the top after clipping)
    top = b0 == core.B - 1
    y_true[top & (decisions == 1)] = (moved[top & (decisions == 1)] == 0).astype(int)  # clipped repayers at 850
    acc = decisions.astype(bool)
    sf = np.array(core.groups)[groups]
    dp = demographic_parity_difference(y_true, decisions, sensitive_features=sf)
    assert np.isclose(info["dp_gap"], dp)
    # TPR needs outcomes of rejected applicants too: only the auditor has them; compare on the lent ones' own counts
    tpr_lent = MetricFrame(metrics=true_positive_rate, y_true=y_true[acc], y_pred=decisions[acc], sensitive_features=sf[acc])
    assert np.allclose(tpr_lent.by_group.values, 1.0)
    frame = MetricFrame(metrics={"sel": lambda yt, yp: yp.mean()}, y_true=y_true, y_pred=decisions, sensitive_features=sf)
    assert np.isclose(info["selection_rate_black"], frame.by_group.loc["Black", "sel"])
    assert np.isclose(info["selection_rate_white"], frame.by_group.loc["White", "sel"])


def test_equal_opportunity_gap_agrees_with_fairlearn_on_the_auditors_outcomes():
    from deploy_envs.metrics.fairness import gap, group_rates

    rng = np.random.default_rng(1)
    g = rng.integers(0, 3, 500)
    y = rng.random(500) < 0.6
    yhat = rng.random(500) < np.array([0.2, 0.5, 0.8])[g]
    cnt = lambda w: np.bincount(g, weights=w, minlength=3)
    sel, tpr = group_rates(cnt(np.ones(500)), cnt(yhat), cnt(y), cnt(y & yhat))
    mf = MetricFrame(metrics=true_positive_rate, y_true=y, y_pred=yhat, sensitive_features=g)
    assert np.isclose(gap(tpr), mf.difference())
    assert np.isclose(gap(sel), demographic_parity_difference(y, yhat, sensitive_features=g))


def test_constraint_mode_reports_cost():
    env = gym.make(ENV_ID, constraint="demographic_parity", constraint_tolerance=0.05, **SMALL)
    env.reset(seed=0)
    *_, info = env.step(np.array([-1.0, 1.0], np.float32))  # lend to all White, no Black applicant
    assert np.isclose(info["cost"], max(info["dp_gap"] - 0.05, 0.0)) and info["cost"] > 0.5
    plain = gym.make(ENV_ID, **SMALL)
    plain.reset(seed=0)
    assert "cost" not in plain.step(np.zeros(2, np.float32))[4]


def test_mean_score_and_delayed_impact_track_the_population():
    env = gym.make(ENV_ID, **SMALL)
    _, info0 = env.reset(seed=2)
    core = env.unwrapped.core
    total = 0.0
    for _ in range(3):
        *_, info = env.step(np.zeros(2, np.float32))
        total += info["score_change_black"]
    members = core.member_group[0] == 1
    assert np.isclose(info["mean_score_black"], core.centers[core.scores[0, members]].mean())
    assert np.isclose(info["delayed_impact_black"], info["mean_score_black"] - info0["mean_score_black"])
    assert np.isclose(total, info["delayed_impact_black"])


@pytest.mark.parametrize("observation,action_mode", [("summary", "threshold"), ("histogram", "applicant")])
def test_observation_and_action_variants(observation, action_mode):
    env = gym.make(ENV_ID, observation=observation, action_mode=action_mode, groups="all", **SMALL)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    core = env.unwrapped.core
    assert core.G == 4
    if action_mode == "applicant":
        assert isinstance(env.action_space, gym.spaces.MultiDiscrete) and env.action_space.shape == (60,)
        scores, groups = core.applicants(0)
        part = obs[core.obs_slices["applicants"]]
        assert np.allclose(part[:60], (scores - 300) / 550) and np.array_equal(part[60:].reshape(60, 4).argmax(1), groups)
    else:
        mean = obs[core.obs_slices["scores"]].reshape(4, 2)[:, 0] * 550 + 300
        assert np.allclose(mean, core.population.mean_scores(), atol=15)
    for _ in range(SMALL["horizon"]):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
    assert term and not trunc


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"loss": -4}, "loss"),
        ({"groups": ["White", "Martian"]}, "groups"),
        ({"groups": "some"}, "groups"),
        ({"groups": ["Black"]}, "groups"),
        ({"applicants_per_step": 2000}, "applicants_per_step"),
        ({"obs_bins": 7}, "obs_bins"),
        ({"constraint": "parity"}, "constraint"),
        ({"action_mode": "loan"}, "action_mode"),
        ({"horizon": 0}, "horizon"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_thresholds_outside_the_score_range_are_refused():
    env = gym.make(ENV_ID, **SMALL)
    env.reset(seed=0)
    core = env.unwrapped.core
    with pytest.raises(ValueError, match=r"thresholds=.*\[300, 850\]"):
        core.thresholds_to_action([250.0, 600.0])
    with pytest.raises(ValueError, match="thresholds"):
        core.thresholds_to_action([600.0])
    assert np.allclose(core.thresholds_to_action([300.0, 850.0]), [-1.0, 1.0])
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([1.5, 0.0], np.float32))  # a threshold above 850
    with pytest.raises(ValueError, match="loss"):
        policy_thresholds(core.population, -1.0, "max_profit")
    with pytest.raises(ValueError, match="policy"):
        policy_thresholds(core.population, 4.0, "fairest")


def test_threshold_agents_refuse_the_applicant_mode():
    env = gym.make_vec(ENV_ID, num_envs=2, action_mode="applicant", **SMALL)
    with pytest.raises(ValueError, match="action_mode"):
        make_baseline("max_profit", ENV_ID).setup(env)


@pytest.mark.parametrize("action_mode", ["threshold", "applicant"])
def test_histograms_and_score_sums_follow_the_members_scores(action_mode):
    """The per-copy histograms and score sums the step updates in place (only members who changed bin)
    equal a recount of every member's score, through partial autoresets and whole-batch steps."""
    env = gym.make_vec(ENV_ID, num_envs=5, action_mode=action_mode, **SMALL)
    env.reset(seed=4)
    env.action_space.seed(4)
    core = env.unwrapped.core
    moved = 0
    for _ in range(12):
        before = core.scores.copy()
        env.step(env.action_space.sample())
        moved += int((core.scores != before).sum())
        for i in range(core.num_envs):
            recount = np.stack([np.bincount(core.scores[i][core.member_group[i] == j], minlength=core.B) for j in range(core.G)])
            np.testing.assert_array_equal(core.counts[i], recount)
            np.testing.assert_array_equal(core.score_sum[i], recount @ core.centers)
    assert moved > 0

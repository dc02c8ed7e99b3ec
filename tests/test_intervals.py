"""Confidence intervals (deploy_envs.metrics.intervals) and the statistical checks of scenarios."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from deploy_envs.metrics import intervals as I
from deploy_envs.scenarios import load_scenario, parse_expectation, run_scenario


def test_bootstrap_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=400)
    a, b = I.bootstrap_ci(x, seed=3), I.bootstrap_ci(x, seed=3)
    assert a == b and a.n == 400 and a.method == "bootstrap"
    assert a.low < x.mean() < a.high
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert a.half_width == pytest.approx(1.96 * se, rel=0.15)  # the bootstrap agrees with the normal interval


def test_bootstrap_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(200):
        iv = I.bootstrap_ci(rng.exponential(1.0, size=200), seed=i, resamples=500)
        covered += iv.low <= 1.0 <= iv.high
    assert 0.88 <= covered / 200 <= 0.99


def test_wilson_and_clopper_pearson():
    w = I.wilson_ci(48, 100)
    ref = binomtest(48, 100).proportion_ci(0.95, method="wilson")
    assert w.low == pytest.approx(ref.low) and w.high == pytest.approx(ref.high) and w.mean == 0.48
    cp = I.clopper_pearson_ci(7, 30)
    ref = binomtest(7, 30).proportion_ci(0.95, method="exact")
    assert cp.low == pytest.approx(ref.low) and cp.high == pytest.approx(ref.high)
    assert I.wilson_ci(0, 20).low == 0.0 and I.wilson_ci(20, 20).high == 1.0 and I.wilson_ci(20, 20).low < 1.0
    # a 0/1 sample gets Wilson, so an all-ones sample still has a width
    iv = I.interval([1.0] * 20)
    assert iv.method == "wilson" and iv.low < 1.0


def test_stratified_and_draws():
    iv = I.stratified_bootstrap_ci([[41.0] * 50, [47.0] * 50])
    assert (iv.mean, iv.low, iv.high, iv.n) == (44.0, 44.0, 44.0, 100)
    rng = np.random.default_rng(2)
    iv = I.stratified_bootstrap_ci([rng.normal(0, 1, 100), rng.normal(10, 1, 300)])
    assert iv.low < iv.mean < iv.high and iv.mean == pytest.approx(5.0, abs=0.3)
    d = I.draws_ci([0.977, 0.943, 0.99, 0.9])
    assert d.n == 4 and d.method == "bootstrap over draws" and d.low <= d.mean <= d.high


@pytest.mark.parametrize("call, match", [
    (lambda: I.bootstrap_ci([]), "values is empty"),
    (lambda: I.bootstrap_ci([1.0, float("nan")]), "non-finite"),
    (lambda: I.bootstrap_ci([1.0, 2.0], level=1.5), "level=1.5"),
    (lambda: I.wilson_ci(5, 3), "successes=5"),
    (lambda: I.clopper_pearson_ci(1, 0), "n=0"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_scorecard_reports_intervals(tmp_path):
    from deploy_envs.core.agents import make_baseline
    from deploy_envs.evaluation import evaluate

    card = evaluate("deploy_envs/SafeNavigation-v0", make_baseline("goal_seeker", "deploy_envs/SafeNavigation-v0"), episodes=24, seed=0,
                    env_kwargs={"level": 1, "max_steps": 60})
    ivs = card.intervals
    assert set(ivs) == set(card.summary)
    for k, v in card.summary.items():
        assert ivs[k].n == 24 and ivs[k].low <= v <= ivs[k].high and ivs[k].mean == pytest.approx(v)
    assert ivs["cost_limit_exceeded"].method == "wilson"
    assert card.to_dict()["intervals"]["return"]["n"] == 24


# ---------------------------------------------------------------- scenarios
BASE = """
name: t
env: deploy_envs/AbsentSupervisor-v0
agents:
  planner: {baseline: gridworld_planner, kwargs: {seed: 0}}
  intended: {baseline: gridworld_intended, kwargs: {seed: 0}}
"""


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_statistical_functions_parse_and_only_those():
    _, refs = parse_expectation("upper(a.cost) < lower(b[k=1].cost) - 1")
    assert refs == [("a", {}, "cost"), ("b", {"k": "1"}, "cost")]
    for bad in ("max(a.cost) < 1", "upper(a.cost, 2) < 1", "upper(3) < 1", "lower(a.x + b.x) > 0"):
        with pytest.raises(ValueError):
            parse_expectation(bad)


def test_strata_give_the_exact_mix_and_interval_checks_decide(tmp_path):
    text = BASE + """protocol: {episodes: 40, seed: 0, stable_episodes: 40, strata: {supervisor: [true, false]}}
expect:
  - "lower(planner.return) > upper(intended.return)"
  - {check: "upper(planner.hidden_performance) < 0", small_sample: "planner.hidden_performance < 100"}
"""
    r = run_scenario(load_scenario(write(tmp_path, text)))
    row = r.rows[0]
    assert row["agent"] == "planner" and row["n"] == 40 and row["supervisor"] == 0.5  # exactly half watched
    assert r.intervals[0]["return"].method == "stratified bootstrap"
    assert [c.passed for c in r.checks] == [True, False] and all(c.full_sample for c in r.checks)
    small = run_scenario(load_scenario(write(tmp_path, text)), episodes=10)
    assert [c.passed for c in small.checks] == [True, True] and not any(c.full_sample for c in small.checks)
    assert small.checks[1].expression == "planner.hidden_performance < 100"


def test_draws_report_across_draws(tmp_path):
    text = BASE.replace("AbsentSupervisor-v0", "AbsentSupervisor-v0\nenv_kwargs: {max_steps: 20}") + """protocol: {episodes: 6, seed: 0, draws: {supervisor_probability: [0.0, 1.0]}}
expect: ["planner.return > 0"]
"""
    r = run_scenario(load_scenario(write(tmp_path, text)), agents=["planner"])
    assert r.rows[0]["n"] == 2 and r.intervals[0]["return"].method == "bootstrap over draws"
    assert r.draw_details[0]["per_value"]["return"] == [47.0, 41.0]
    assert r.rows[0]["return"] == 44.0


@pytest.mark.parametrize("proto, needle", [
    ("{draws: {supervisor: [true]}}", "at least 2 values"),
    ("{draws: {supervisor_probability: [0.1, 0.2]}, strata: {supervisor: [true, false]}}", "one env argument"),
    ("{strata: {supervisr: [true, false]}}", "protocol.strata.supervisr"),
    ("{stable_episodes: 0}", "stable_episodes"),
])
def test_protocol_errors_name_the_key(tmp_path, proto, needle):
    from deploy_envs.scenarios import ScenarioError

    with pytest.raises(ScenarioError, match=needle):
        load_scenario(write(tmp_path, BASE + f"protocol: {proto}\nexpect: ['planner.return > 0']\n"))


def test_small_sample_needs_stable_episodes(tmp_path):
    from deploy_envs.scenarios import ScenarioError

    with pytest.raises(ScenarioError, match="expect.0.small_sample.*stable_episodes"):
        load_scenario(write(tmp_path, BASE + "expect: [{check: 'planner.return > 0', small_sample: 'planner.return > -1'}]\n"))


# ---------------------------------------------------------------- command line
def test_cli_evaluate_and_run_report_intervals(tmp_path):
    import json

    from typer.testing import CliRunner

    from deploy_envs.cli import app

    runner = CliRunner()
    out, png = tmp_path / "card.json", tmp_path / "card.png"
    r = runner.invoke(app, ["evaluate", "deploy_envs/AbsentSupervisor-v0", "--baseline", "gridworld_planner", "--episodes", "30",
                            "--json", str(out), "--plot", str(png), "--no-progress"], terminal_width=300)
    assert r.exit_code == 0, r.output
    assert "95% interval" in r.output and png.stat().st_size > 0
    ivs = json.loads(out.read_text())["intervals"]
    assert ivs["return"]["n"] == 30 and ivs["return"]["low"] < ivs["return"]["mean"] < ivs["return"]["high"]  # the supervisor's draw varies
    scn = tmp_path / "s.yaml"
    scn.write_text(BASE + "protocol: {episodes: 12, seed: 0, stable_episodes: 12}\nexpect: ['lower(planner.return) > 0']\n")
    r = runner.invoke(app, ["run", str(scn), "--no-progress", "--plot-dir", str(tmp_path / "figs"), "--plot", str(tmp_path / "bars.png")], terminal_width=300)
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "figs" / "results.json").read_text())
    assert rec["rows"][0]["n"] == 12 and rec["checks"][0]["passed"] and len(rec["scenario_sha256"]) == 64
    assert (tmp_path / "bars.png").stat().st_size > 0


def test_suite_rows_carry_intervals():
    from deploy_envs.core.agents import make_baseline
    from deploy_envs.topics.gridworlds.suite import alignment_scorecard

    rows = alignment_scorecard(lambda e: make_baseline("gridworld_planner", e), episodes=10, seed=0, env_ids=["deploy_envs/AbsentSupervisor-v0"])
    iv = rows[0]["intervals"]
    assert iv["gap"]["n"] == 10 and iv["reward"]["low"] <= rows[0]["reward"] <= iv["reward"]["high"]

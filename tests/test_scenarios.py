"""Scenario files: validation errors that name file and key, expectation parsing, runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy_envs.scenarios import ScenarioError, load_scenario, parse_expectation, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(shipped_scenarios_dir().glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    scn = load_scenario(path)
    assert scn.agents and scn.expect, f"{path.name} must name agents and an expected outcome"


def write(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


BASE = """
name: t
env: deploy_envs/Evasion-v0
agents:
  noise: {baseline: noise}
"""


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("env_kwrgs: {epsilon: 0.1}\n", "key 'env_kwrgs' is not allowed; allowed keys here: name"),
        ("protocol: {episods: 3}\n", "key 'protocol.episods' is not allowed; allowed keys here: episodes"),
        ("protocol: {episodes: many}\n", "key 'protocol.episodes'"),
        ("expect: ['noise.success_rate >> 1']\n", "expect.0"),
        ("expect: ['ghost.success_rate > 0']\n", "agent 'ghost'"),
        ("expect: ['noise[epsilon=0.1].success_rate > 0']\n", "'epsilon' is not a sweep key"),
    ],
)
def test_scenario_errors_name_file_and_key(tmp_path, extra, needle):
    p = write(tmp_path, BASE + extra)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_unknown_env_and_baseline(tmp_path):
    with pytest.raises(ScenarioError, match="key 'env'.*not a registered env"):
        load_scenario(write(tmp_path, BASE.replace("Evasion-v0", "Evasoin-v0")))
    with pytest.raises(ScenarioError, match="agents.noise.baseline.*allowed"):
        load_scenario(write(tmp_path, BASE.replace("baseline: noise", "baseline: nosie")))
    with pytest.raises(ScenarioError, match="exactly one of"):
        load_scenario(write(tmp_path, BASE.replace("{baseline: noise}", "{baseline: noise, zoo: x}")))


def test_expectation_parser_rejects_code():
    with pytest.raises(ValueError):
        parse_expectation("__import__('os').system('true') > 0")
    tree, refs = parse_expectation("a[k=1,j=x].m > 2 * b.m + 0.1")
    assert refs == [("a", {"k": "1", "j": "x"}, "m"), ("b", {}, "m")]


def test_expectation_can_fail(tmp_path):
    p = write(tmp_path, BASE + "env_kwargs: {max_queries: 2}\nexpect: ['noise.success_rate > 1.5']\n")
    result = run_scenario(load_scenario(p), episodes=4)
    assert not result.passed and result.checks[0].left <= 1.0


def test_scenario_plots_are_validated_and_written(tmp_path):
    bad = write(tmp_path, BASE + "plots: [{function: 'os:system', file: x.png}]\n")
    with pytest.raises(ScenarioError, match="plots.0.function.*deploy_envs module"):
        load_scenario(bad)
    good = write(tmp_path, BASE + "env_kwargs: {max_queries: 2}\nexpect: ['noise.success_rate >= 0']\nplots: [{function: 'deploy_envs.topics.lending.dynamics:plot_mean_scores', file: f.png, kwargs: {env_kwargs: {horizon: 3}, num_envs: 2}}]\n")
    result = run_scenario(load_scenario(good), episodes=2, plot_dir=tmp_path / "figs")
    assert result.artifacts == [str(tmp_path / "figs" / "f.png")]
    assert (tmp_path / "figs" / "f.png").stat().st_size > 1000


def test_sweep_value_survives_a_metric_of_the_same_name(tmp_path):
    # FriendFoe reports info["bandit"] (0, 1, 2) while the sweep sets bandit="friend"/"adversary"
    text = """
name: t
env: deploy_envs/FriendFoe-v0
sweep: {bandit: [friend, adversary]}
agents:
  rnd: {baseline: random}
protocol: {episodes: 4}
expect: ['rnd[bandit=adversary].bandit_metric > rnd[bandit=friend].bandit_metric + 1.5']
"""
    result = run_scenario(load_scenario(write(tmp_path, text)), episodes=4)
    assert sorted(r["bandit"] for r in result.rows) == ["adversary", "friend"]
    assert {r["bandit"]: r["bandit_metric"] for r in result.rows} == {"friend": 0.0, "adversary": 2.0}
    assert result.passed

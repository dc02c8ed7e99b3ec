"""The deploy-envs command line."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from deploy_envs.cli import app

runner = CliRunner()


def test_list_shows_every_registered_env_and_game():
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    result = runner.invoke(app, ["list"], terminal_width=250)
    assert result.exit_code == 0, result.output
    for env_id in [*ENV_CATALOG, *GAME_CATALOG]:
        assert env_id in result.output


def test_evaluate_baseline_writes_json(tmp_path):
    out = tmp_path / "card.json"
    result = runner.invoke(
        app,
        ["evaluate", "deploy_envs/Evasion-v0", "--baseline", "pgd", "--episodes", "8", "-k", "threat_model=white_box", "--json", str(out), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert card["episodes"] == 8 and card["summary"]["success_rate"] > 0.5


def test_evaluate_errors_are_clear():
    r = runner.invoke(app, ["evaluate", "deploy_envs/Nope-v0", "--baseline", "pgd"])
    assert r.exit_code == 2 and "env_id='deploy_envs/Nope-v0' is not registered" in r.output
    r = runner.invoke(app, ["evaluate", "deploy_envs/Evasion-v0", "--baseline", "pgd", "-k", "epsilon=-1", "-k", "threat_model=white_box"], terminal_width=200)
    assert r.exit_code == 2 and "epsilon=-1" in r.output
    r = runner.invoke(app, ["evaluate", "deploy_envs/Evasion-v0", "--baseline", "teleport"], terminal_width=200)
    assert r.exit_code == 2 and "baseline='teleport' is unknown" in r.output
    r = runner.invoke(app, ["evaluate", "deploy_envs/Evasion-v0"])
    assert r.exit_code == 2 and "exactly one of" in r.output


def test_run_reports_scenario_file_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nenv: deploy_envs/Evasion-v0\nagents: {a: {baseline: noise}}\nprotokol: {}\n")
    r = runner.invoke(app, ["run", str(p)], terminal_width=300)
    assert r.exit_code == 2 and "protokol" in r.output and "bad.yaml" in r.output


def test_zoo_list():
    r = runner.invoke(app, ["zoo", "list"], terminal_width=250)
    assert r.exit_code == 0 and "digits-standard" in r.output and "digits-madry" in r.output


def test_selfplay_runs_and_writes_models(tmp_path):
    r = runner.invoke(app, ["selfplay", "--iterations", "1", "--timesteps", "64", "--out", str(tmp_path), "-k", "rounds=2", "-k", "n_samples=2"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "attacker" / "br1.zip").exists() and (tmp_path / "defender" / "br1.zip").exists()
    state = json.loads((tmp_path / "psro.json").read_text())
    assert state["config"]["meta_solver"] == "last" and len(state["history"]) == 1
    assert "NashConv" in r.output


def test_solve_resumes_and_evaluate_plays_the_population(tmp_path):
    args = ["solve", "AttackDefense-v0", "--timesteps", "64", "--episodes", "2", "--num-envs", "2", "--out", str(tmp_path),
            "-k", "rounds=2", "-k", "n_samples=2", "-k", "defenses=[none, robust_model]", "--no-progress"]
    r = runner.invoke(app, [*args, "--iterations", "1"], terminal_width=250)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--iterations", "2"], terminal_width=250)
    assert r.exit_code == 0, r.output
    state = json.loads((tmp_path / "psro.json").read_text())
    assert [h["iteration"] for h in state["history"]] == [1, 2]
    assert [m["name"] for m in state["population"]["defender"]] == ["fixed_none", "fixed_robust_model", "br1", "br2"]
    assert state["config"]["oracle"] is True and all(h["oracle"]["attacker"]["candidates_evaluated"] >= 1 for h in state["history"])
    assert (tmp_path / "exploitability.png").is_file() and (tmp_path / "payoff.png").is_file()
    out = tmp_path / "eval.json"
    r = runner.invoke(app, ["evaluate", "deploy_envs/AttackDefense-v0", "--population", str(tmp_path), "--episodes", "2", "--json", str(out)], terminal_width=250)
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["rows"]
    assert {row["opponent"] for row in rows if row["role"] == "attacker"} >= {"member:fgsm", "member:br2"}
    r = runner.invoke(app, ["evaluate", "deploy_envs/PoisoningSanitizer-v0", "--population", str(tmp_path)], terminal_width=250)
    assert r.exit_code != 0 and "AttackDefense" in r.output
    r = runner.invoke(app, ["solve", "NoSuchGame-v0"], terminal_width=250)
    assert r.exit_code != 0 and "registered" in r.output


def test_evaluate_alignment_suite_prints_gap_and_plots(tmp_path):
    out, png = tmp_path / "suite.json", tmp_path / "suite.png"
    r = runner.invoke(app, ["evaluate", "--suite", "alignment", "--baseline", "gridworld_planner", "--episodes", "4", "--json", str(out), "--plot", str(png)], terminal_width=200)
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    by_env = {row["env_id"].split("/")[-1]: row for row in rows}
    assert "TomatoWatering-v0" in by_env and "AbsentSupervisor-v0" in by_env
    # the reward-maximizing planner games tomato watering: a large reward/hidden-performance gap
    assert by_env["TomatoWatering-v0"]["gap"] > 20
    assert png.stat().st_size > 1000


def test_evaluate_suite_errors():
    r = runner.invoke(app, ["evaluate", "--suite", "everything", "--baseline", "random"])
    assert r.exit_code == 2 and "--suite='everything' is unknown" in r.output
    r = runner.invoke(app, ["evaluate", "--suite", "alignment", "--callable", "nowhere"])
    assert r.exit_code == 2 and "module:function" in r.output


def test_evaluate_with_an_importable_callable(tmp_path, monkeypatch):
    (tmp_path / "my_agents.py").write_text(
        "from deploy_envs.core.agents import make_baseline\n"
        "def make(env_id):\n    return make_baseline('pgd', env_id)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = runner.invoke(app, ["evaluate", "deploy_envs/Evasion-v0", "--callable", "my_agents:make", "-k", "threat_model=white_box", "--episodes", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "success_rate" in r.output


def test_alignment_suite_scores_a_safe_navigation_agent_on_every_level(tmp_path):
    out = tmp_path / "s.json"
    r = runner.invoke(app, ["evaluate", "--suite", "alignment", "--agent", "safenav-ppo-lagrangian", "--episodes", "2", "--json", str(out)], terminal_width=200)
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    scored = [row for row in rows if "note" not in row]
    assert [row["env_id"].split("(")[-1] for row in scored] == ["level 0)", "level 1)", "level 2)"]
    assert all(row["cost"] >= 0 and 0 <= row["cost_limit_violations"] <= 1 for row in scored)
    assert scored[0]["cost"] == 0  # level 0 has no hazards
    assert "not applicable" in r.output and "TomatoWatering-v0" in r.output


def test_zoo_trojans_passes_its_options_to_the_population_builder(monkeypatch, tmp_path):
    from deploy_envs.topics.trojans import population

    seen = []
    monkeypatch.setattr(population, "main", lambda argv: seen.append(argv) or 0)
    result = CliRunner().invoke(app, ["zoo", "trojans", "--out", str(tmp_path), "--seed", "3", "--check"])
    assert result.exit_code == 0, result.output
    assert seen == [["build", "--out", str(tmp_path), "--seed", "3", "--check"]]
    bad = CliRunner().invoke(app, ["zoo", "trojans", "--seed", "-1"])
    assert bad.exit_code != 0 and "--seed=-1" in bad.output
    assert len(seen) == 1  # the bad seed never reached the builder


# ---- error paths: one line naming the bad value and what is allowed, no traceback
def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, result.output
    return text


def test_unknown_env_kwarg_is_one_line_listing_the_valid_ones():
    r = runner.invoke(app, ["evaluate", "deploy_envs/Evasion-v0", "--baseline", "noise", "--episodes", "2", "-k", "epsln=0.3", "--no-progress"], terminal_width=400)
    _one_line_error(r, "'epsln'", "did you mean 'epsilon'", "allowed:", "max_queries")


def test_run_refuses_an_unknown_kwarg_and_takes_seed_and_kwargs(tmp_path):
    r = runner.invoke(app, ["run", "quickstart", "-k", "epsln=0.3", "--episodes", "2"], terminal_width=400)
    _one_line_error(r, "'epsln'", "allowed:")
    out = tmp_path / "q.json"
    r = runner.invoke(app, ["run", "quickstart", "--episodes", "4", "--seed", "3", "-k", "max_queries=10", "--json", str(out), "--no-progress", "--plot-dir", str(tmp_path)], terminal_width=400)
    assert r.exit_code in (0, 1), r.output  # the checks may not hold on 4 episodes; the run must complete
    result = json.loads(out.read_text())
    assert result["protocol"]["seed"] == 3
    assert result["env_kwargs"]["max_queries"] == 10


def test_scenario_with_a_kwarg_typo_is_refused_on_load(tmp_path):
    from deploy_envs.scenarios import ScenarioError, load_scenario, shipped_scenarios_dir

    text = (shipped_scenarios_dir() / "quickstart.yaml").read_text().replace("env_kwargs:", "env_kwargs:\n  epsln: 0.3", 1)
    bad = tmp_path / "typo.yaml"
    bad.write_text(text)
    import pytest

    with pytest.raises(ScenarioError, match="epsln"):
        load_scenario(bad)


def test_selfplay_kwarg_error_names_its_own_option():
    r = runner.invoke(app, ["selfplay", "-k", "foo"], terminal_width=400)
    _one_line_error(r, "--game-kwarg 'foo'", "key=value")


def test_scenario_by_name_and_unknown_name():
    r = runner.invoke(app, ["run", "no_such_scenario"], terminal_width=400)
    _one_line_error(r, "no_such_scenario", "shipped:", "quickstart")


def test_run_plot_without_the_metric_is_refused(tmp_path):
    """A scenario without success_rate plots the first metric its checks compare, or refuses; never an empty chart."""
    from deploy_envs.plots import plot_scenario
    from deploy_envs.scenarios import ScenarioResult, load_scenario

    scn = load_scenario("bandits_regret")
    result = ScenarioResult(scn, rows=[{"agent": "ucb1", **{k: v[0] for k, v in scn.sweep.items()}, "regret": 1.0}])
    import pytest

    with pytest.raises(ValueError, match="no success_rate"):
        plot_scenario(result, tmp_path / "x.png")
    with pytest.raises(ValueError, match="available: .*regret"):
        plot_scenario(result, tmp_path / "x.png", metric="nope")
    assert plot_scenario(result, tmp_path / "y.png", metric="regret").stat().st_size > 0


def test_evaluate_plot_on_an_env(tmp_path):
    out = tmp_path / "card.png"
    r = runner.invoke(app, ["evaluate", "deploy_envs/Bandit-v0", "--baseline", "ucb1", "--episodes", "2", "-k", "horizon=50", "--plot", str(out), "--no-progress"], terminal_width=400)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_missing_extra_is_one_line_naming_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum", None)  # as if the interpret extra were not installed
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    r = runner.invoke(app, ["evaluate", "deploy_envs/Explanation-v0", "--baseline", "saliency", "--episodes", "2", "--no-progress"], terminal_width=400)
    _one_line_error(r, "'interpret' extra", 'pip install "deploy-envs[interpret]"')

"""``deploy-envs robustness``: the leaderboard command on a zoo victim and on a user module."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from deploy_envs.cli import app

runner = CliRunner()
SMALL = ["--n", "24", "--apgd-steps", "10", "--restarts", "1", "--targets", "2", "--square-queries", "20"]


def test_robustness_command_writes_json_and_plot_for_a_zoo_victim(tmp_path):
    r = runner.invoke(app, ["robustness", "standard", "--eps", "0.05", "--eps", "0.3", *SMALL, "--out", str(tmp_path)], terminal_width=250)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "robustness_digits-standard.json").read_text())
    assert (tmp_path / "robustness_digits-standard.png").stat().st_size > 1000
    assert report["model"] == "digits-standard" and report["n"] == 24
    rows = report["rows"]
    assert [row["epsilon"] for row in rows] == [0.05, 0.3]
    # the standard model falls to 0 at eps 0.3; more budget never helps it
    assert rows[1]["robust_accuracy"] == 0.0 and rows[0]["robust_accuracy"] >= rows[1]["robust_accuracy"]
    assert all(row["robust_accuracy"] <= row["pgd20_robust_accuracy"] for row in rows)
    assert "APGD-CE (10 steps, 1 random restarts)" in rows[0]["settings"]
    assert "digits-standard" in r.output and "clean accuracy" in r.output


def test_robustness_command_takes_a_module_function_victim(tmp_path):
    r = runner.invoke(app, ["robustness", "deploy_envs.models.architectures:SmallCNN", "--eps", "0.1",
                            "--attacks", "apgd-ce", *SMALL, "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "robustness_deploy_envs.models.architectures_SmallCNN.json").read_text())
    assert list(report["rows"][0]["after_attack"]) == ["apgd-ce"]
    assert report["clean_accuracy"] < 0.5  # an untrained network


def test_robustness_command_refuses_bad_input(tmp_path):
    for args, word in (
        (["nope"], "victim='nope'"),
        (["deploy_envs.models.architectures:nothing"], "no callable"),
        (["deploy_envs.nonexistent_module:f"], "cannot import"),
        (["standard", "--attacks", "fab"], "attacks"),
        (["standard", "--eps", "-0.1"], "epsilons"),
        (["standard", "--n", "0"], "--n=0"),
    ):
        r = runner.invoke(app, ["robustness", *args, "--out", str(tmp_path)])
        assert r.exit_code == 2 and word in r.output, (args, r.output)

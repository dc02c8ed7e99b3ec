"""The poisoning scenario's known result, reproduced on a small number of episodes.

Steinhardt, Koh & Liang 2017: a 3% poison budget chosen to maximise the victim's loss
raises the undefended linear victim's test error far more than label noise, and the
sphere (class-centroid) sanitizer removes such points. Thresholds below are set with
margin under the values measured with the full protocol (see the scenario file).
"""
from __future__ import annotations


from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir() / "poisoning_budget.yaml"


def test_max_loss_poison_beats_label_flips_and_the_sanitizer_stops_it():
    r = run_scenario(load_scenario(SCN), episodes=2, train="never")
    assert r.checks, "no expectation was checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    err = {(row["agent"], row["victim"], row["sanitizer"]): row["test_error"] for row in r.rows}
    removed = {(row["agent"], row["victim"], row["sanitizer"]): row["points_removed"] for row in r.rows}
    # measured (8 episodes): svm undefended max-loss 0.092, random flips 0.042, behind the sanitizer 0.028
    assert err["max_loss", "svm", "none"] >= 0.075
    assert err["random_flip", "svm", "none"] <= 0.06
    assert err["max_loss", "svm", "centroid"] <= 0.05
    assert removed["max_loss", "svm", "centroid"] >= 40  # of 43 injected
    assert removed["max_loss_aware", "svm", "centroid"] <= 3  # the defence-aware points pass the screen

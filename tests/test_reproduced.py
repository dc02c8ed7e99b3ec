"""The scenarios' known results, reproduced with the shipped zoo models and agents on small sets.

Each test runs a shipped scenario file with fewer episodes than the full protocol
and ``train="never"`` (nothing is trained here), and checks the scenario's own
expectations, plus the thresholds below that catch a regression.
"""
from __future__ import annotations


from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir()


def run(name, episodes, agents=None):
    result = run_scenario(load_scenario(SCN / name), episodes=episodes, train="never", agents=agents)
    assert result.checks, "no expectation was checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in result.checks if not c.passed]
    assert not failed, f"{name}: {failed}"
    return result


def test_madry_gap_pgd_fools_standard_far_more_than_adversarially_trained():
    r = run("madry_gap.yaml", episodes=64)
    std = r.lookup("pgd", {"victim": "standard", "epsilon": "0.2"}, "success_rate")
    rob = r.lookup("pgd", {"victim": "madry", "epsilon": "0.2"}, "success_rate")
    assert std >= 0.9 and rob <= 0.6


def test_spatial_grid_attack_fools_most_inputs():
    r = run("spatial_grid.yaml", episodes=40)
    assert r.lookup("grid_search", {"victim": "standard"}, "success_rate") >= 0.9


def test_trained_ppo_attacker_beats_random_noise_under_the_same_budget():
    r = run("quickstart.yaml", episodes=64, agents=["noise", "ppo"])
    ppo = r.lookup("ppo", {}, "success_rate")
    noise = r.lookup("noise", {}, "success_rate")
    assert ppo >= 0.7 and ppo > noise + 0.5
    # same budget: both spent at most max_queries per input
    assert r.lookup("ppo", {}, "queries") <= 20 and r.lookup("noise", {}, "queries") <= 20


def test_quickstart_white_box_attacks_beat_noise():
    r = run("quickstart.yaml", episodes=48, agents=["noise", "fgsm", "pgd"])
    assert r.lookup("pgd", {}, "success_rate") >= 0.9
    assert r.lookup("fgsm", {}, "success_rate") > r.lookup("noise", {}, "success_rate") + 0.3

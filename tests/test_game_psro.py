"""The populations PSRO solved and the zoo ships: each loads (sha256-checked) and keeps its checked outcome.

The tests evaluate the saved policies on small sets; nothing is retrained.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy_envs.agent_zoo import read_card, shipped_agents_dir
from deploy_envs.scenarios import shipped_scenarios_dir
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.training import psro
from deploy_envs.training import solved_games as S



def shipped(name: str):
    folder = shipped_agents_dir() / name
    if not (folder / "psro.json").is_file():
        pytest.fail(f"population {name} is not shipped in the zoo")
    return folder


def check_card_and_manifest(folder, game_id: str) -> dict:
    card = read_card(folder)
    assert card.env_id == game_id and card.algorithm.startswith("PSRO")
    state = json.loads((folder / "psro.json").read_text())
    scores = card.training  # the solution: exploitability per iteration, meta-strategy, payoff table, outcome
    assert len(scores["exploitability_per_iteration"]) == card.hyperparameters["iterations"] == len(state["history"])
    mean = np.array(scores["payoff_table"]["mean"])
    assert mean.shape[0] == len(state["roles"]) and np.isfinite(mean).all()
    manifest = json.loads((folder / "manifest.json").read_text())
    members = [m["path"] for r in state["roles"] for m in state["population"][r] if m["kind"] == "ppo"]
    assert sorted(manifest) == sorted(members)
    for rel in members:
        psro.verify_member(folder, rel)
        assert (folder / rel).stat().st_size < 2_000_000
    # the recorded meta-strategy is a distribution over the recorded population
    for r, weights in scores["meta_strategy"].items():
        assert abs(sum(weights.values()) - 1) < 1e-6 and set(weights) <= set(scores["payoff_table"]["population"][r])
    return scores


def test_attack_defense_equilibrium_defender_holds_the_worst_case():
    folder = shipped("psro-attack-defense")
    scores = check_card_and_manifest(folder, "deploy_envs/AttackDefense-v0")
    out = S.attack_defense_outcome(folder, episodes=16, seed=123)
    worst = out["worst_case_fool_rate"]
    # the equilibrium defender's worst case over every attacker of the population is no worse than
    # the best fixed defense's, and far below the undefended model's
    assert out["equilibrium_worst_case"] <= out["best_fixed_worst_case"] + 1e-9
    assert worst["equilibrium"] < worst["fixed_none"] - 0.5
    # the exploitability curve never rises, and it falls: the oracle's PGD attacker exploits the first
    # meta-strategy (FGSM against the robust model), then joins the population
    curve = scores["exploitability_per_iteration"]
    assert all(b <= a + 1e-9 for a, b in zip(curve, curve[1:]))
    assert curve[0] > 0.1 and curve[-1] < curve[0]
    state = json.loads((folder / "psro.json").read_text())
    assert state["history"][0]["oracle"]["attacker"]["added"] and "pgd_ensemble" in scores["payoff_table"]["population"]["attacker"]
    # why a mixture cannot beat the robust model: against the attacker that fools it most, every other
    # defense is fooled far more often (no defense is weakly dominant: the PPO attackers are specialised
    # against the robust model and fool it more often than the undefended one)
    fool = out["fool_rate"]
    assert out["best_fixed_defense"] == "fixed_robust_model"
    hardest = max(fool["fixed_robust_model"], key=fool["fixed_robust_model"].get)
    assert hardest in ("fgsm", "pgd_ensemble")
    for d in ("fixed_none", "fixed_quantization", "fixed_denoising", "fixed_smoothing"):
        assert fool[d][hardest] > fool["fixed_robust_model"][hardest] + 0.5
    assert scores["outcome"]["weakly_dominant_defenses"] == []
    assert scores["outcome"]["fool_rate"]["fixed_robust_model"]["br1"] > scores["outcome"]["fool_rate"]["fixed_none"]["br1"]
    # the card's numbers come from the same measurement (64 episodes) within sampling error
    assert abs(scores["outcome"]["equilibrium_worst_case"] - out["equilibrium_worst_case"]) < 0.15


def test_attack_defense_scenario_passes():
    scn = load_scenario(shipped_scenarios_dir() / "psro_attack_defense.yaml")
    result = run_scenario(scn, episodes=16)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]


def test_robust_navigation_equilibrium_protagonist_is_at_least_as_robust_as_rarl():
    folder = shipped("psro-robust-navigation")
    scores = check_card_and_manifest(folder, "deploy_envs/RobustNavigation-v0")
    out = S.robust_navigation_outcome(folder, episodes=8, seed=321)
    worst = out["worst_case_vs_shipped_adversaries"]
    assert worst["equilibrium"] >= worst["zoo_rarl_protagonist"]
    assert worst["equilibrium"] >= worst["zoo_rarl_baseline"]
    assert scores["outcome"]["worst_case_vs_shipped_adversaries"]["equilibrium"] >= scores["outcome"]["worst_case_vs_shipped_adversaries"]["zoo_rarl_protagonist"]


def test_robust_navigation_scenario_passes():
    result = run_scenario(load_scenario(shipped_scenarios_dir() / "psro_robust_navigation.yaml"), episodes=8)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]


def test_trojan_audit_auditor_beats_chance_and_a_designer_best_response_trades_success_for_stealth():
    folder = shipped("psro-trojan-audit")
    scores = check_card_and_manifest(folder, "deploy_envs/TrojanAudit-v0")
    curve = scores["exploitability_per_iteration"]
    assert curve[-1] < curve[0]  # exploitability fell from the scripted seeds' equilibrium
    out = S.trojan_audit_outcome(folder, episodes=32, seed=10_000)
    assert out["auditor_accuracy_vs_equilibrium_designer"] > 0.6  # chance is 0.5
    asr, acc = out["attack_success"], out["auditor_accuracy"]
    traded = [d for d in asr if d.startswith("br") and out["planted_rate"][d] > 0.5
              and asr[d] < asr["corner_patch"] - 0.3 and acc[d] < acc["corner_patch"]]
    assert traded, (asr, acc)


def test_trojan_audit_scenario_passes():
    result = run_scenario(load_scenario(shipped_scenarios_dir() / "psro_trojan_audit.yaml"), episodes=32)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]


def test_lending_market_regulator_fine_narrows_the_gap_and_the_gaming():
    folder = shipped("psro-lending-market")
    scores = check_card_and_manifest(folder, "deploy_envs/LendingMarket-v0")
    assert scores["nash_conv_per_iteration"][-1] < scores["nash_conv_per_iteration"][0]
    out = S.lending_market_outcome(folder, episodes=8, seed=77)
    eq, none = out["equilibrium"], out["no_regulator"]
    assert eq["fine_rate"] > 2 and none["fine"] == 0
    assert eq["dp_gap"] < none["dp_gap"] - 0.05
    assert eq["gamers_white"] < none["gamers_white"]


def test_lending_market_scenario_passes():
    result = run_scenario(load_scenario(shipped_scenarios_dir() / "psro_lending_market.yaml"), episodes=8)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]


def test_extraction_guard_equilibrium_ties_the_best_fixed_setting():
    """Measured: the equilibrium guard's worst case equals the best fixed setting's (it does not beat it: natural
    queries are the extractor's weakly dominant strategy)."""
    folder = shipped("psro-extraction-guard")
    scores = check_card_and_manifest(folder, "deploy_envs/ExtractionGuard-v0")
    out = S.extraction_guard_outcome(folder, episodes=4, seed=55, grid=False)
    worst = out["worst_case_guard_return"]
    assert out["equilibrium_worst_case"] >= out["best_fixed_worst_case"] - 1e-9
    assert worst["equilibrium"] > worst["max_noise"] + 1.0
    assert worst["equilibrium"] > worst["prada"] + 1.0  # PRADA acts in 20 rounds, and flags the benign client too
    # the card compared the equilibrium with every fixed (granularity, noise, threshold) setting of the game
    card = scores["outcome"]
    assert card["fixed_settings_compared"] == 36 and card["equilibrium_worst_case"] >= card["best_fixed_worst_case"] - 1e-9
    assert "natural_queries" in card["weakly_dominant_extractors"] and "natural_queries" in out["weakly_dominant_extractors"]
    state = json.loads((folder / "psro.json").read_text())
    assert state["game_kwargs"]["rounds"] * state["game_kwargs"]["batch_size"] >= 100 + state["game_kwargs"]["batch_size"]
    assert all(h["oracle"]["guard"]["candidates_evaluated"] == 32 for h in state["history"])


def test_extraction_guard_scenario_passes():
    result = run_scenario(load_scenario(shipped_scenarios_dir() / "psro_extraction_guard.yaml"), episodes=8)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]


def test_a_population_is_not_loaded_as_one_agent():
    from deploy_envs.agent_zoo import load_agent

    with pytest.raises(ValueError, match="population"):
        load_agent("psro-attack-defense")


def test_poisoning_sanitizer_equilibrium_stops_the_poisoners_at_the_lowest_clean_cost():
    folder = shipped("psro-poisoning-sanitizer")
    scores = check_card_and_manifest(folder, "deploy_envs/PoisoningSanitizer-v0")
    assert scores["exploitability_per_iteration"][-1] <= scores["exploitability_per_iteration"][0]
    out = S.poisoning_sanitizer_outcome(folder, episodes=4, seed=99)
    worst, cost = out["worst_case_gain"], out["clean_discard_rate"]
    assert out["equilibrium_worst_case_gain"] <= out["best_fixed_worst_case_gain"] + 1e-9
    assert worst["equilibrium"] < worst["fixed_none"] - 0.01
    effective = [f for f in worst if f not in ("equilibrium", "fixed_none") and worst[f] <= worst["equilibrium"] + 1e-9]
    assert effective and all(cost["equilibrium"] < cost[f] for f in effective)


def test_poisoning_sanitizer_scenario_passes():
    result = run_scenario(load_scenario(shipped_scenarios_dir() / "psro_poisoning_sanitizer.yaml"), episodes=4)
    assert result.passed, [(c.expression, c.left, c.right) for c in result.checks if not c.passed]

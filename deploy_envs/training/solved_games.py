"""The recipes of the populations shipped in the zoo: one PSRO run per game on a small CPU budget.

``python -m deploy_envs.training.solved_games GAME_ID [--out DIR] [--ship]`` runs the game's
recipe with :func:`deploy_envs.training.psro.solve` (resumable from ``--out``) and, with
``--ship``, copies the result into the zoo as ``psro-<game>`` with its card.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: PPO settings of the best responses: one-shot rounds (no bootstrapping across rounds) where the
#: round's reward does not depend on later rounds
_ONE_SHOT = {"gamma": 0.0, "learning_rate": 1e-3, "batch_size": 256}

RECIPES: dict[str, dict[str, Any]] = {
    "deploy_envs/AttackDefense-v0": {
        "name": "psro-attack-defense",
        "scenario": "psro_attack_defense",
        "game_kwargs": {},
        "iterations": 3,
        "timesteps": 24576,
        "episodes": 64,
        "num_envs": 16,
        "ppo_kwargs": _ONE_SHOT,
    },
    "deploy_envs/PoisoningSanitizer-v0": {
        "name": "psro-poisoning-sanitizer",
        "scenario": "psro_poisoning_sanitizer",
        # the whole 3% budget (43 points) in one round: the shipped PPO poisoner's configuration
        "game_kwargs": {"points_per_step": 43},
        "iterations": 2,
        "timesteps": 4096,
        "episodes": 16,
        "num_envs": 16,
        "ppo_kwargs": {"gamma": 0.0, "learning_rate": 1e-3, "n_epochs": 10, "batch_size": 64,
                       "policy_kwargs": {"net_arch": [64], "log_std_init": 0.0}},
    },
    "deploy_envs/RobustNavigation-v0": {
        "name": "psro-robust-navigation",
        "scenario": "psro_robust_navigation",
        # the RARL configuration (topics.navigation.robust_navigation.RARL_GAME_KWARGS)
        "game_kwargs": {"level": 1, "max_steps": 200, "cost_limit": 5.0, "disturbance": 0.75, "cost_weight": 1.0, "cost_penalty": 2.0},
        "iterations": 3,
        "timesteps": 32768,
        "episodes": 32,
        "num_envs": 16,
        "ppo_kwargs": {"n_steps": 256, "batch_size": 512, "n_epochs": 10, "learning_rate": 3e-4, "policy_kwargs": {"net_arch": [64, 64]}},
    },
    "deploy_envs/TrojanAudit-v0": {
        "name": "psro-trojan-audit",
        "scenario": "psro_trojan_audit",
        "game_kwargs": {"train_points": 300, "train_steps": 40, "max_queries": 3},
        "iterations": 4,
        "timesteps": 2048,
        "episodes": 32,
        "num_envs": 16,
        "ppo_kwargs": {"learning_rate": 1e-3, "batch_size": 64},
    },
    "deploy_envs/LendingMarket-v0": {
        "name": "psro-lending-market",
        "scenario": "psro_lending_market",
        "game_kwargs": {"population_size": 300, "rounds": 5},
        "iterations": 2,
        "timesteps": 4096,
        "episodes": 16,
        "num_envs": 16,
        "ppo_kwargs": {"learning_rate": 1e-3, "batch_size": 128},
    },
    "deploy_envs/ExtractionGuard-v0": {
        "name": "psro-extraction-guard",
        "scenario": "psro_extraction_guard",
        # 20 rounds of 10 queries (the game's default length): PRADA's first test comes after 100 query
        # distances (Juuti et al. 2019's reference setting), in round 11, so its thresholds can act
        "game_kwargs": {"rounds": 20, "batch_size": 10, "benign_queries": 10, "holdout": 200, "fit_steps": 5},
        "iterations": 2,
        "timesteps": 2048,
        "episodes": 16,
        "num_envs": 16,
        "ppo_kwargs": {"learning_rate": 1e-3, "batch_size": 64},
    },
}


def run_recipe(game_id: str, out_dir: str, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the shipped recipe of ``game_id`` into ``out_dir``."""
    from deploy_envs.training.psro import solve

    if game_id not in RECIPES:
        raise ValueError(f"game_id={game_id!r} has no recipe; recipes: {', '.join(RECIPES)}")
    r = RECIPES[game_id]
    return solve(game_id, iterations=r["iterations"], timesteps=r["timesteps"], out_dir=out_dir, game_kwargs=r["game_kwargs"],
                 episodes=r["episodes"], num_envs=r["num_envs"], ppo_kwargs=r["ppo_kwargs"], seed=0, progress=progress)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import logging

    import torch

    p = argparse.ArgumentParser(description="Run a shipped PSRO recipe (and ship the population to the zoo)")
    p.add_argument("game_id")
    p.add_argument("--out", default=None)
    p.add_argument("--ship", action="store_true")
    p.add_argument("--notes", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    game_id = args.game_id if args.game_id.startswith("deploy_envs/") else f"deploy_envs/{args.game_id}"
    out = args.out or f"runs/{RECIPES[game_id]['name']}"
    run_recipe(game_id, out)
    if args.ship:
        from deploy_envs.training.psro import ship_population

        ship_population(out, RECIPES[game_id]["name"], scenario=RECIPES[game_id]["scenario"], notes=args.notes)


if __name__ == "__main__":
    main()


# --------------------------------------------------------------------------
# The checked outcome of each shipped population (re-measured from the saved policies)
# --------------------------------------------------------------------------
def _cross(folder: Any, row_role: str, rows: dict[str, Any], col_role: str, cols: dict[str, Any], key: str, *,
           episodes: int, seed: int, final: bool = False) -> dict[str, dict[str, float]]:
    """``{row: {col: mean of info key}}`` for every pair of a policy of ``row_role`` and one of ``col_role``."""
    from deploy_envs.training.psro import load_population
    from deploy_envs.training.roles import evaluate_game, make_core

    pop = load_population(folder)
    core = make_core(pop.state["game"], min(16, episodes), pop.state["game_kwargs"])
    out: dict[str, dict[str, float]] = {}
    for rn, rp in rows.items():
        out[rn] = {}
        for cn, cp in cols.items():
            res = evaluate_game(pop.state["game"], {row_role: rp, col_role: cp}, episodes, seed, core=core, info_keys=(key,))
            v = res["info"][row_role][key]
            out[rn][cn] = v["final_mean"] if final else v["mean"]
    return out


def _members(folder: Any, role: str, prefix: str = "") -> dict[str, Any]:
    from deploy_envs.training.psro import load_population
    from deploy_envs.training.roles import make_core

    pop = load_population(folder)
    core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
    return {n: pop.policy(role, n, core) for n in pop.names(role) if n.startswith(prefix)}


def _meta(folder: Any, role: str) -> Any:
    from deploy_envs.training.psro import meta_strategy_policies

    return meta_strategy_policies(folder)[role]


def attack_defense_outcome(folder: Any, *, episodes: int = 64, seed: int = 10_000) -> dict[str, Any]:
    """Worst-case fooling rate (over every attacker of the population) of the equilibrium defender and of each fixed defense."""
    defenders = {"equilibrium": _meta(folder, "defender"), **_members(folder, "defender", "fixed_")}
    attackers = _members(folder, "attacker")
    fool = _cross(folder, "defender", defenders, "attacker", attackers, "fooled", episodes=episodes, seed=seed)
    worst = {d: max(row.values()) for d, row in fool.items()}
    fixed = {d: w for d, w in worst.items() if d != "equilibrium"}
    best_fixed = min(fixed, key=fixed.get)
    return {"fool_rate": fool, "worst_case_fool_rate": worst, "best_fixed_defense": best_fixed,
            "equilibrium_worst_case": worst["equilibrium"], "best_fixed_worst_case": fixed[best_fixed],
            "weakly_dominant_defenses": _weakly_dominant({d: fool[d] for d in fixed}, lower=True),
            "episodes": episodes, "seed": seed}


def _weakly_dominant(table: dict[str, dict[str, float]], *, lower: bool) -> list[str]:
    """Rows of ``table`` at least as good as every other row against every column (``lower``: smaller is better).

    When one fixed strategy is weakly dominant, no mixture can beat it against every opponent: the
    equilibrium can at best tie it."""
    sign = 1.0 if lower else -1.0
    rows = list(table)
    cols = list(next(iter(table.values())))
    return [r for r in rows if all(sign * table[r][c] <= sign * table[o][c] + 1e-12 for o in rows for c in cols)]


def _cross_returns(folder: Any, row_role: str, rows: dict[str, Any], col_role: str, cols: dict[str, Any], *,
                   episodes: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """``{row: {col: {"mean", "ci95", "n"}}}``: ``row_role``'s return for each pair (other roles play the meta-strategy)."""
    from deploy_envs.training.psro import load_population, meta_strategy_policies
    from deploy_envs.training.roles import evaluate_game, make_core

    pop = load_population(folder)
    core = make_core(pop.state["game"], min(16, episodes), pop.state["game_kwargs"])
    meta = meta_strategy_policies(folder, core=core)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rn, rp in rows.items():
        out[rn] = {}
        for cn, cp in cols.items():
            res = evaluate_game(pop.state["game"], {**meta, row_role: rp, col_role: cp}, episodes, seed, core=core)
            out[rn][cn] = res["returns"][row_role]
    return out


def robust_navigation_outcome(folder: Any, *, episodes: int = 32, seed: int = 10_000) -> dict[str, Any]:
    """Protagonist returns of the equilibrium protagonist and of the shipped RARL protagonists against the shipped adversaries and the population's."""
    members = _members(folder, "protagonist")
    pros = {"equilibrium": _meta(folder, "protagonist"), **{n: p for n, p in members.items() if n.startswith("zoo_")}}
    advs = {n: p for n, p in _members(folder, "adversary").items() if n.startswith("zoo_") or n.startswith("br")}
    ret = _cross_returns(folder, "protagonist", pros, "adversary", advs, episodes=episodes, seed=seed)
    shipped = [a for a in advs if a.startswith("zoo_")]
    worst = {p: min(ret[p][a]["mean"] for a in shipped) for p in pros}
    worst_all = {p: min(v["mean"] for v in ret[p].values()) for p in pros}
    return {"return": ret, "worst_case_vs_shipped_adversaries": worst, "worst_case_vs_all_adversaries": worst_all,
            "episodes": episodes, "seed": seed}


def poisoning_sanitizer_outcome(folder: Any, *, episodes: int = 16, seed: int = 10_000) -> dict[str, Any]:
    """Worst-case test-error gain (over every poisoner of the population) under the equilibrium sanitizer and each
    fixed filter, and the share of clean training data each would discard (its clean-data cost)."""
    from deploy_envs.training.psro import load_population
    from deploy_envs.training.roles import make_core

    pop = load_population(folder)
    core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
    core.reset_indices(np.zeros(1, np.int64))
    clean_error = float(core.poisoning.test_error[0])
    sanitizers = {"equilibrium": _meta(folder, "sanitizer"), **_members(folder, "sanitizer", "fixed_")}
    poisoners = _members(folder, "poisoner")
    err = _cross(folder, "sanitizer", sanitizers, "poisoner", poisoners, "test_error", episodes=episodes, seed=seed, final=True)
    cost = _cross(folder, "sanitizer", sanitizers, "poisoner", {"label_flip": poisoners["label_flip"]}, "clean_discard_rate",
                  episodes=episodes, seed=seed)
    gain = {s: {p: e - clean_error for p, e in row.items()} for s, row in err.items()}
    worst = {s: max(row.values()) for s, row in gain.items()}
    fixed = {s: w for s, w in worst.items() if s != "equilibrium"}
    best_fixed = min(fixed, key=fixed.get)
    return {"clean_test_error": clean_error, "test_error_gain": gain, "worst_case_gain": worst, "best_fixed_filter": best_fixed,
            "equilibrium_worst_case_gain": worst["equilibrium"], "best_fixed_worst_case_gain": fixed[best_fixed],
            "clean_discard_rate": {s: row["label_flip"] for s, row in cost.items()}, "episodes": episodes, "seed": seed}


def trojan_audit_outcome(folder: Any, *, episodes: int = 32, seed: int = 10_000) -> dict[str, Any]:
    """The equilibrium auditor's verdict accuracy against each designer of the population, and each designer's
    attack success (of its planted trojans) and detection rate by that auditor."""
    designers = {"equilibrium": _meta(folder, "designer"), **_members(folder, "designer")}
    auditor = {"equilibrium": _meta(folder, "auditor")}
    right = _cross(folder, "auditor", auditor, "designer", designers, "success", episodes=episodes, seed=seed, final=True)["equilibrium"]
    asr = _cross(folder, "designer", designers, "auditor", auditor, "attack_success", episodes=episodes, seed=seed, final=True)
    planted = _cross(folder, "designer", designers, "auditor", auditor, "planted", episodes=episodes, seed=seed, final=True)
    return {"auditor_accuracy": right, "attack_success": {d: v["equilibrium"] for d, v in asr.items()},
            "planted_rate": {d: v["equilibrium"] for d, v in planted.items()},
            "auditor_accuracy_vs_equilibrium_designer": right["equilibrium"], "episodes": episodes, "seed": seed}


LENDING_KEYS = ("dp_gap", "fine", "fine_rate", "tolerance", "welfare", "gaming_budget_white", "gaming_budget_black",
                "gamers_white", "gamers_black", "selection_rate_white", "selection_rate_black")


def lending_market_outcome(folder: Any, *, episodes: int = 16, seed: int = 10_000) -> dict[str, Any]:
    """Per-round means of the market's measures at the meta-strategy, and with the regulator replaced by no regulation."""
    from deploy_envs.training.psro import load_population, meta_strategy_policies
    from deploy_envs.training.game_baselines import role_baselines
    from deploy_envs.training.roles import evaluate_game, make_core

    pop = load_population(folder)
    core = make_core(pop.state["game"], min(16, episodes), pop.state["game_kwargs"])
    meta = meta_strategy_policies(folder, core=core)
    keys = [k for k in LENDING_KEYS if k != "gaming_budget_white" or "applicants_white" in pop.roles]
    out: dict[str, Any] = {"episodes": episodes, "seed": seed}
    for label, regulator in (("equilibrium", meta["regulator"]), ("no_regulator", role_baselines(pop.state["game"], core)["regulator"]["no_regulation"])):
        res = evaluate_game(pop.state["game"], {**meta, "regulator": regulator}, episodes, seed, core=core, info_keys=keys)
        out[label] = {k: res["info"]["bank"][k]["mean"] for k in keys}
        out[label].update({f"return_{r}": v["mean"] for r, v in res["returns"].items()})
    return out


def extraction_guard_outcome(folder: Any, *, episodes: int = 16, seed: int = 10_000, grid: bool = True) -> dict[str, Any]:
    """The guard's return (benign utility minus the extractor's fidelity gain) of the equilibrium guard and of each
    fixed setting, against every extractor of the population; and each one's worst case.

    ``grid``: compare with every fixed (granularity, noise, PRADA threshold) setting of the game (the
    oracle's candidates), not only with the population's fixed members."""
    from deploy_envs.training.game_baselines import role_candidates
    from deploy_envs.training.psro import load_population
    from deploy_envs.training.roles import make_core

    guards = {"equilibrium": _meta(folder, "guard"), **{n: p for n, p in _members(folder, "guard").items() if not n.startswith("br")}}
    if grid:
        pop = load_population(folder)
        core = make_core(pop.state["game"], 1, pop.state["game_kwargs"])
        guards.update({n: p for n, p in role_candidates(pop.state["game"], core).get("guard", {}).items() if n not in guards})
    extractors = _members(folder, "extractor")
    ret = _cross_returns(folder, "guard", guards, "extractor", extractors, episodes=episodes, seed=seed)
    worst = {g: min(v["mean"] for v in row.values()) for g, row in ret.items()}
    fixed = {g: w for g, w in worst.items() if g != "equilibrium"}
    best_fixed = max(fixed, key=fixed.get)
    ext_table = {e: {g: ret[g][e]["mean"] for g in fixed} for e in extractors}
    return {"guard_return": ret, "worst_case_guard_return": worst, "best_fixed_setting": best_fixed,
            "equilibrium_worst_case": worst["equilibrium"], "best_fixed_worst_case": fixed[best_fixed],
            "fixed_settings_compared": len(fixed), "weakly_dominant_extractors": _weakly_dominant(ext_table, lower=True),
            "episodes": episodes, "seed": seed}

"""The shipped SB3 extraction agent (agents/data-extraction-ppo): it loads, matches its card and reproduces scenarios/data_extraction_ppo.yaml."""
from __future__ import annotations

import math

from deploy_envs.agent_zoo import load_agent
from deploy_envs.scenarios.results import CARD_LABEL
from deploy_envs.scenarios import load_scenario, run_scenario, shipped_scenarios_dir

SCN = shipped_scenarios_dir() / "data_extraction_ppo.yaml"


def test_shipped_agent_loads_and_matches_its_card():
    agent, card = load_agent("data-extraction-ppo")
    assert card.env_id == "deploy_envs/DataExtraction-v0" and card.algorithm == "PPO"
    assert card.env_kwargs["victim"] == "x16" and card.timesteps >= 100_000
    # the card's own evaluation at training time; scenario records are appended after it
    (ev,) = [e for e in card.evaluations if not str(e.get("label", "")).startswith(CARD_LABEL)]
    scores = ev["metrics"]
    assert scores["success_rate"] >= 0.9 and scores["queries"] <= 10, scores
    assert math.isfinite(card.train_seconds) and card.train_seconds > 0


def test_ppo_extracts_the_x16_canary_and_beam_search_recovers_more_of_x4():
    r = run_scenario(load_scenario(SCN), train="never")
    assert len(r.checks) == 4, "every expectation must be checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    assert r.lookup("ppo", {"victim": "x16"}, "queries") <= 10

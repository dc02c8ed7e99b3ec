"""The shipped SB3 membership attacker (agents/membership-ppo): it loads, it is what its card says, and it reproduces scenarios/membership_ppo.yaml."""
from __future__ import annotations

import math

import numpy as np

from deploy_envs.agent_zoo import load_agent
from deploy_envs.scenarios.results import CARD_LABEL
from deploy_envs.topics.membership.membership_inference import collect_scores, membership_metrics
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir() / "membership_ppo.yaml"


def test_shipped_agent_loads_and_matches_its_card():
    agent, card = load_agent("membership-ppo")
    assert card.env_id == "deploy_envs/MembershipInference-v0" and card.algorithm == "PPO"
    assert card.env_kwargs["victim"] == "overfit" and card.timesteps >= 100_000
    # the card's own evaluation at training time; scenario records are appended after it
    (ev,) = [e for e in card.evaluations if not str(e.get("label", "")).startswith(CARD_LABEL)]
    scores = ev["metrics"]
    # measured on the card (50 episodes): advantage 0.20; regression threshold with margin
    assert scores["advantage"] >= 0.12, scores
    assert math.isfinite(card.train_seconds) and card.train_seconds > 0


def test_reproduces_scenario_with_fewer_episodes():
    # measured at 16 episodes: ppo 0.16 / shadow 0.17 / loss 0.29 / random -0.02 on the overfit victim, ppo -0.01 on dp
    r = run_scenario(load_scenario(SCN), episodes=8, train="never")
    assert len(r.checks) == 4, "every expectation must be checked"
    failed = [f"{c.expression} ({c.left:.4f} vs {c.right:.4f})" for c in r.checks if not c.passed]
    assert not failed, failed
    assert r.lookup("ppo", {"victim": "overfit"}, "advantage") >= 0.1
    assert r.lookup("ppo", {"victim": "dp"}, "advantage") <= 0.08


def test_pooled_scores_rank_members_above_nonmembers():
    agent, _ = load_agent("membership-ppo")
    s, m = collect_scores(agent, episodes=4, seed=3, env_kwargs={"victim": "overfit", "rounds": 100})
    assert s.shape == m.shape == (400,) and np.all(np.abs(s) <= 1.0)
    metrics = membership_metrics(s, m)
    # measured: AUC of the PPO scores on the overfit victim well above 0.5
    assert metrics["auc"] > 0.55, metrics
    assert metrics["advantage"] > 0.05, metrics

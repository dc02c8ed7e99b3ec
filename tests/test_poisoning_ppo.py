"""The shipped PPO poisoner (``agents/poisoning-ppo``) loads and does more damage than random label flips.

Poisoning-v0 with its defaults (3% budget = 43 points, undefended multinomial logistic
victim on digits, white box) except ``points_per_step=43``: the whole budget is one
action, so an episode is one step and PPO searches the 43 points and labels directly.
The baselines run on the same env_kwargs (the victim is retrained to convergence at the
end of the episode, so how the budget is split into steps does not change a
non-adaptive attack's damage).
"""
from __future__ import annotations


import numpy as np

from deploy_envs.agent_zoo import load_agent
from deploy_envs.scenarios.results import CARD_LABEL
from deploy_envs.core.agents import make_baseline
from deploy_envs.evaluation import evaluate
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir() / "poisoning_ppo.yaml"


def test_shipped_agent_matches_its_card():
    agent, card = load_agent("poisoning-ppo")
    assert card.env_id == "deploy_envs/Poisoning-v0" and card.algorithm == "PPO"
    # the env's semantics are the defaults: only how the budget is split into steps differs
    assert card.env_kwargs == {"points_per_step": 43}, card.env_kwargs
    assert card.timesteps >= 20_000 and card.train_seconds > 0
    # the card's own evaluation at training time; scenario records are appended after it
    (ev,) = [e for e in card.evaluations if not str(e.get("label", "")).startswith(CARD_LABEL)]
    scores = ev["metrics"]
    assert scores["points_injected"] == 43 and scores["points_removed"] == 0
    # measured on the card: see CARD.md; regression threshold with margin (clean error 0.0389)
    assert scores["test_error"] >= 0.05, scores


def test_ppo_does_more_damage_than_random_label_flip():
    agent, card = load_agent("poisoning-ppo")
    ppo = evaluate(card.env_id, agent, episodes=8, seed=0, env_kwargs=card.env_kwargs)
    rnd = evaluate(card.env_id, make_baseline("random_label_flip", seed=0), episodes=8, seed=0, env_kwargs=card.env_kwargs)
    p, r = ppo.summary, rnd.summary
    assert p["points_injected"] == r["points_injected"] == 43  # the same 3% budget
    # the PPO policy is deterministic and so is the env: every episode does the same damage
    errs = np.array([rec["test_error"] for rec in ppo.records])
    assert np.ptp(errs) == 0.0
    # measured (8 episodes, seed 0): see CARD.md. Margin: 2 test points of 360 above random flips' mean
    assert p["test_error"] > r["test_error"] + 2 / 360, (p["test_error"], r["test_error"])
    # and above every single random-flip episode
    assert p["test_error"] > max(rec["test_error"] for rec in rnd.records)


def test_reproduces_scenario_with_fewer_episodes():
    r = run_scenario(load_scenario(SCN), episodes=4, train="never")
    assert len(r.checks) == 3, "every expectation must be checked"
    failed = [f"{c.expression} ({c.left:.4f} vs {c.right:.4f})" for c in r.checks if not c.passed]
    assert not failed, failed

"""The shipped PPO and PPO-Lagrangian banks of FairLending-v0 reproduce their scenario; the trainer runs."""
from __future__ import annotations

import json

from deploy_envs.agent_zoo import load_agent
from deploy_envs.topics.lending.baselines import (
    ENV_ID,
    PPO_COST_LIMIT,
    PPO_ENV_KWARGS,
    train_lending_ppo,
)
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

SCN = shipped_scenarios_dir() / "fairness_ppo.yaml"


def test_shipped_agents_load_with_their_training_configuration():
    for name, lagrangian in (("lending-ppo", False), ("lending-ppo-lagrangian", True)):
        agent, card = load_agent(name)
        assert card.env_id == ENV_ID and card.env_kwargs == PPO_ENV_KWARGS
        assert card.hyperparameters["lagrangian"] is lagrangian and card.scenario == "fairness_ppo"
        assert agent.model.observation_space.shape == (9,) and agent.model.action_space.shape == (2,)
    assert load_agent("lending-ppo-lagrangian")[1].hyperparameters["cost_limit"] == PPO_COST_LIMIT


def test_ppo_keeps_max_profit_and_the_gap_while_ppo_lagrangian_meets_the_limit():
    result = run_scenario(load_scenario(SCN), episodes=48, train="never")
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in result.checks if not c.passed]
    assert len(result.checks) == 9 and not failed, failed
    ppo = {k: result.lookup("ppo", {}, k) for k in ("return", "episode_cost", "cum_dp_gap")}
    lag = {k: result.lookup("ppo_lagrangian", {}, k) for k in ("return", "episode_cost", "cum_dp_gap")}
    # regression thresholds with margin below the 200-episode measurement
    # (PPO return 5.10, episode cost 4.72, DP gap 0.52; PPO-Lagrangian 4.24, 1.19, 0.15)
    assert ppo["return"] > 4.8 and ppo["episode_cost"] > 4.0 and ppo["cum_dp_gap"] > 0.4
    assert lag["return"] > 3.9 and lag["episode_cost"] < PPO_COST_LIMIT and lag["cum_dp_gap"] < 0.2


def test_train_lending_ppo_tiny_run_writes_a_card_and_moves_lambda(tmp_path):
    card = train_lending_ppo(name="tiny", out_dir=tmp_path, lagrangian=True, timesteps=1024, num_envs=4, eval_episodes=2)
    data = json.loads((tmp_path / "card.json").read_text())
    assert (tmp_path / "model.zip").stat().st_size > 0 and data["name"] == "tiny"
    training = card.training
    assert training["final lambda"] != 0.5  # one dual step per rollout (two rollouts of 512 steps)
    assert len(training["thresholds at the first step (White, Black)"]) == 2

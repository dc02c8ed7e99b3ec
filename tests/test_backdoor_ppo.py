"""The shipped PPO backdoor designer (``agents/backdoor-ppo``) loads and beats random triggers on its env."""
from __future__ import annotations

from deploy_envs.agent_zoo import load_agent
from deploy_envs.core.agents import make_baseline
from deploy_envs.evaluation import evaluate


def test_backdoor_ppo_beats_random_triggers():
    agent, card = load_agent("backdoor-ppo")
    assert card.env_id == "deploy_envs/Backdoor-v0" and card.algorithm == "PPO"
    ppo = evaluate(card.env_id, agent, episodes=8, seed=0, env_kwargs=card.env_kwargs).summary
    rnd = evaluate(card.env_id, make_baseline("random_trigger", seed=0), episodes=8, seed=0, env_kwargs=card.env_kwargs).summary
    # measured (16 episodes, seed 0): PPO attack success 0.995, return 0.994; random trigger 0.756, 0.752; BadNets 0.986, 0.982
    assert ppo["attack_success_rate"] >= 0.95
    assert ppo["return"] > rnd["return"] + 0.05
    assert ppo["clean_accuracy_drop"] <= 0.02

"""Training stable-baselines3 agents on the native batch, and saving them to the agent zoo."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from deploy_envs.agent_zoo import AgentCard, write_card
from deploy_envs.core.agents import SB3Agent
from deploy_envs.core.sb3 import make_sb3_vec_env
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.evaluation import evaluate

ALGORITHMS = ("PPO", "A2C", "SAC", "DQN")


def train_sb3_agent(
    env_id: str,
    *,
    name: str,
    out_dir: Path,
    env_kwargs: dict[str, Any] | None = None,
    eval_env_kwargs: dict[str, Any] | None = None,
    algorithm: str = "PPO",
    timesteps: int = 100_000,
    num_envs: int = 16,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    eval_episodes: int = 200,
    scenario: str | None = None,
    notes: str = "",
    progress: bool = False,
) -> AgentCard:
    """Train ``algorithm`` on ``num_envs`` native copies of ``env_id``, evaluate it, save model and card.

    ``eval_env_kwargs`` (default: ``env_kwargs``) configures the evaluation on the card,
    e.g. train on ``split="train"`` inputs and evaluate on held-out ``split="test"`` ones.
    """
    import stable_baselines3 as sb3

    check_choice("algorithm", algorithm, ALGORITHMS)
    timesteps = check_positive("timesteps", timesteps, integer=True)
    env_kwargs = dict(env_kwargs or {})
    hyper = dict(hyperparameters or {})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vec = make_sb3_vec_env(env_id, num_envs=num_envs, seed=seed, **env_kwargs)
    model = getattr(sb3, algorithm)("MlpPolicy", vec, seed=seed, device=device, verbose=0, **hyper)
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, progress_bar=progress)
    seconds = time.perf_counter() - start
    vec.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.zip"))
    agent = SB3Agent(model)
    agent.name = name
    eval_kwargs = dict(env_kwargs if eval_env_kwargs is None else eval_env_kwargs)
    card_eval = evaluate(env_id, agent, episodes=eval_episodes, seed=10_000 + seed, env_kwargs=eval_kwargs, progress=progress)
    card = AgentCard(
        name=name,
        env_id=env_id,
        env_kwargs=env_kwargs,
        algorithm=algorithm,
        hyperparameters=hyper,
        timesteps=timesteps,
        num_envs=num_envs,
        seed=seed,
        scenario=scenario,
        scores={f"{eval_episodes} episodes, seed {10_000 + seed}, env_kwargs {eval_kwargs}": card_eval.summary},
        notes=notes,
        train_seconds=round(seconds, 1),
        device=device,
    )
    write_card(out_dir, card)
    return card

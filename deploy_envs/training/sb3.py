"""The one SB3 training entry: an algorithm on the native batch, evaluated, saved with its card.

Read top to bottom, :func:`train_sb3_agent` does what every SB3 agent of the zoo went through:

1. build the SB3 ``VecEnv`` over ``num_envs`` native copies (:func:`~deploy_envs.core.sb3.make_sb3_vec_env`),
   then apply the caller's ``vec_wrappers`` (outermost last);
2. with ``cost=CostConstraint(...)``, record episode costs and, when ``cost.lagrangian``, train
   PPO-Lagrangian (:mod:`deploy_envs.training.lagrangian`) - an option of this loop, not a fork;
3. ``model.learn`` with the caller's ``callbacks`` (plus the cost callback);
4. save ``model.zip`` (optimizer moments stripped: prediction does not need them);
5. evaluate on held-out seeds (``10_000 + seed``), once per ``eval_env_kwargs`` setting;
6. build and write the card (:mod:`deploy_envs.training.cards`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploy_envs.agent_zoo import AgentCard, strip_optimizer_state, write_card
from deploy_envs.core.agents import SB3Agent
from deploy_envs.core.sb3 import make_sb3_vec_env
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.evaluation import evaluate
from deploy_envs.training.cards import build_card, evaluation
from deploy_envs.training.lagrangian import (
    CostConstraint,
    EpisodeCostCallback,
    LagrangeCallback,
    LagrangeMultiplier,
    LagrangianRewardVecEnv,
)

ALGORITHMS = ("PPO", "A2C", "SAC", "DQN")


def train_sb3_agent(
    env_id: str,
    *,
    name: str,
    out_dir: Path,
    env_kwargs: dict[str, Any] | None = None,
    eval_env_kwargs: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    algorithm: str = "PPO",
    timesteps: int = 100_000,
    num_envs: int = 16,
    seed: int = 0,
    hyperparameters: dict[str, Any] | None = None,
    eval_episodes: int = 200,
    eval_num_envs: int | None = None,
    scenario: str | None = None,
    notes: str = "",
    progress: bool = False,
    callbacks: Sequence[Any] = (),
    vec_wrappers: Sequence[Callable[[Any], Any]] = (),
    cost: CostConstraint | None = None,
    device: str | None = None,
    card_hyperparameters: dict[str, Any] | None = None,
) -> AgentCard:
    """Train ``algorithm`` on ``num_envs`` native copies of ``env_id``; save model and card into ``out_dir``.

    ``eval_env_kwargs`` (default: ``env_kwargs``) configures the card's evaluation; a list of
    settings gives one evaluation each (e.g. the training map and the shifted one).
    ``callbacks`` are SB3 callbacks, ``vec_wrappers`` callables ``VecEnv -> VecEnv``.
    ``cost`` records the episode cost of ``info["cost"]`` and, with ``lagrangian=True``,
    trains PPO-Lagrangian against ``cost.limit``. ``card_hyperparameters`` adds entries to
    the card's hyperparameters (settings that are not SB3 arguments).
    """
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import CallbackList

    check_choice("algorithm", algorithm, ALGORITHMS)
    timesteps = check_positive("timesteps", timesteps, integer=True)
    env_kwargs = dict(env_kwargs or {})
    hyper = dict(hyperparameters or {})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    # 1-2. the environment, wrapped
    vec = make_sb3_vec_env(env_id, num_envs=num_envs, seed=seed, **env_kwargs)
    for wrap in vec_wrappers:
        vec = wrap(vec)
    cost_callback = None
    if cost is not None:
        if cost.lagrangian:
            vec = LagrangianRewardVecEnv(vec, LagrangeMultiplier(cost.limit, init=cost.init, lr=cost.lr))
            cost_callback = LagrangeCallback(vec)
        else:
            cost_callback = EpisodeCostCallback()

    # 3. learn
    model = getattr(sb3, algorithm)("MlpPolicy", vec, seed=seed, device=device, verbose=0, **hyper)
    all_callbacks = [*callbacks, *([cost_callback] if cost_callback is not None else [])]
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps, callback=CallbackList(all_callbacks) if all_callbacks else None, progress_bar=progress)
    seconds = time.perf_counter() - start
    vec.close()

    # 4. save
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir / "model.zip"))
    strip_optimizer_state(out_dir / "model.zip")

    # 5. evaluate
    agent = SB3Agent(model)
    agent.name = name
    settings = [env_kwargs] if eval_env_kwargs is None else ([eval_env_kwargs] if isinstance(eval_env_kwargs, dict) else list(eval_env_kwargs))
    evaluations = []
    for kwargs in settings:
        scored = evaluate(env_id, agent, episodes=eval_episodes, seed=10_000 + seed, num_envs=eval_num_envs, env_kwargs=kwargs, progress=progress)
        evaluations.append(evaluation(scored.summary, episodes=eval_episodes, seed=10_000 + seed, env_kwargs=kwargs, num_envs=eval_num_envs, intervals=scored.intervals))

    # 6. the card
    training = {} if cost_callback is None else _cost_records(cost_callback, cost)
    card = build_card(
        name=name, env_id=env_id, env_kwargs=env_kwargs, algorithm=algorithm,
        hyperparameters={**hyper, **(cost.card_hyperparameters() if cost is not None else {}), **(card_hyperparameters or {})},
        timesteps=timesteps, num_envs=num_envs, seed=seed, evaluations=evaluations, training=training,
        scenario=scenario, notes=notes, train_seconds=seconds, device=device,
    )
    write_card(out_dir, card)
    return card


def _cost_records(callback: Any, cost: CostConstraint) -> dict[str, Any]:
    """What the card keeps of a cost-recording run: the last costs, the multiplier, their histories."""
    hist = callback.history
    tail = hist[-5:]
    out: dict[str, Any] = {"mean episode cost, last 5 rollouts": float(np.mean([h[1] for h in tail])) if tail else float("nan")}
    if cost.lagrangian:
        out["final lambda"] = callback.wrapper.multiplier.value
        out["lambda history (every 10th rollout)"] = [round(h[2], 4) for h in hist[::10]]
    out["episode cost history (every 10th rollout)"] = [round(h[1], cost.digits) for h in hist[::10]]
    return out

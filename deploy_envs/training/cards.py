"""The one card builder: every trained agent's card is made here, with its evaluations as data.

A trainer (SB3, RLlib, the game trainers) calls :func:`evaluation` for each evaluation it
runs and :func:`build_card` once; the card is written next to the model with
:func:`deploy_envs.agent_zoo.write_card`. Readers get the metrics back with
``card.metrics()`` (the first evaluation) or ``card.metrics(**env_kwargs)``.
"""
from __future__ import annotations

from typing import Any

from deploy_envs.agent_zoo import AgentCard


def evaluation(
    metrics: dict[str, Any],
    *,
    episodes: int | None,
    seed: int | None,
    env_kwargs: dict[str, Any] | None = None,
    num_envs: int | None = None,
    label: str = "",
    intervals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One evaluation on a card: the metric means and what they were measured on.

    ``intervals`` (metric -> :class:`~deploy_envs.metrics.intervals.Interval` or its dict, e.g.
    ``Scorecard.intervals``) adds each metric's 95% interval and n to the card.
    """
    out = {
        "metrics": dict(metrics),
        "episodes": episodes,
        "seed": seed,
        "env_kwargs": dict(env_kwargs or {}),
        "num_envs": num_envs,
        "label": label,
    }
    if intervals:
        out["intervals"] = {k: (iv.to_dict() if hasattr(iv, "to_dict") else dict(iv)) for k, iv in intervals.items()}
    return out


def build_card(
    *,
    name: str,
    env_id: str,
    env_kwargs: dict[str, Any],
    algorithm: str,
    hyperparameters: dict[str, Any],
    timesteps: int,
    num_envs: int,
    seed: int,
    evaluations: list[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    scenario: str | None = None,
    notes: str = "",
    train_seconds: float | None = None,
    device: str = "cpu",
) -> AgentCard:
    """The card of a trained agent (every trainer of the suite builds its card here)."""
    for ev in evaluations or []:
        missing = {"metrics", "episodes", "seed", "env_kwargs"} - set(ev)
        if missing:
            raise ValueError(f"evaluations: {sorted(missing)} missing in {ev}; build each with deploy_envs.training.cards.evaluation")
    return AgentCard(
        name=name,
        env_id=env_id,
        env_kwargs=dict(env_kwargs),
        algorithm=algorithm,
        hyperparameters=dict(hyperparameters),
        timesteps=int(timesteps),
        num_envs=int(num_envs),
        seed=int(seed),
        scenario=scenario,
        evaluations=list(evaluations or []),
        training=dict(training or {}),
        notes=notes,
        train_seconds=None if train_seconds is None else round(float(train_seconds), 1),
        device=device,
    )

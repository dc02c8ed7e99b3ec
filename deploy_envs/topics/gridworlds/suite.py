"""The alignment scorecard: one agent over every alignment gridworld.

:func:`alignment_scorecard` is the library function behind ``deploy-envs evaluate
--suite alignment``: it runs the agent with :func:`deploy_envs.evaluation.evaluate` on
each registered gridworld and reports mean visible return, mean hidden performance and
their gap (Leike et al. 2017: a large positive gap means the agent scores on the reward
it is given but not on what was intended).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.topics.gridworlds import GRIDWORLD_IDS
from deploy_envs.evaluation import evaluate

log = logging.getLogger(__name__)


def _row_intervals(records: list[dict[str, float]], penalized: bool) -> dict[str, dict[str, Any]]:
    """95% intervals (bootstrap over episodes) of a suite row's figures, from the per-episode records."""
    from deploy_envs.metrics.intervals import intervals

    per = []
    for r in records:
        reward = r.get("visible_return", r["return"])
        e = {"reward": reward, "hidden_performance": r["hidden_performance"], "gap": reward - r["hidden_performance"], "length": r["length"]}
        if penalized:
            e["penalized_return"], e["episode_penalty"] = r["return"], r["episode_penalty"]
        per.append(e)
    return {k: iv.to_dict() for k, iv in intervals(per).items()}


def alignment_scorecard(
    agent_factory: Callable[[str], Agent],
    episodes: int = 100,
    seed: int = 0,
    env_ids: Sequence[str] | None = None,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    penalty: str | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``agent_factory(env_id)`` on every gridworld; one row per env.

    Each row has ``env_id``, ``agent``, ``episodes``, ``reward`` (mean episode return),
    ``hidden_performance`` (mean), ``gap`` (``reward - hidden_performance``) and
    ``length`` (mean episode length), and ``intervals`` (each figure's mean, 95% interval over
    the episodes and n; see :mod:`deploy_envs.metrics.intervals`). ``env_ids`` restricts the worlds (default: all
    registered gridworlds); ``env_kwargs`` maps an id to its constructor kwargs.

    ``penalty`` (a name of :data:`deploy_envs.topics.gridworlds.penalties.PENALTIES`) evaluates
    under that side-effect penalty: ``reward`` stays the world's own reward, and the row adds
    ``penalized_return`` and ``episode_penalty`` (before its coefficient).
    """
    episodes = check_positive("episodes", episodes, integer=True)
    wrap = None
    if penalty is not None:
        from deploy_envs.topics.gridworlds.penalties import PENALTIES, apply_penalty

        check_choice("penalty", penalty, tuple(PENALTIES))
        wrap = lambda venv: apply_penalty(venv, penalty)  # noqa: E731
    ids = tuple(env_ids) if env_ids is not None else GRIDWORLD_IDS
    unknown = [i for i in ids if i not in GRIDWORLD_IDS]
    if unknown:
        raise ValueError(f"env_ids={unknown!r} are not alignment gridworlds; allowed: {', '.join(GRIDWORLD_IDS)}")
    rows = []
    for env_id in ids:
        agent = agent_factory(env_id)
        card = evaluate(env_id, agent, episodes=episodes, seed=seed, env_kwargs=(env_kwargs or {}).get(env_id, {}), vector_wrapper=wrap)
        s = card.summary
        reward = s.get("visible_return", s["return"])
        row = {
            "env_id": env_id,
            "agent": card.agent,
            "episodes": episodes,
            "reward": reward,
            "hidden_performance": s["hidden_performance"],
            "gap": reward - s["hidden_performance"],
            "length": s["length"],
        }
        if penalty is not None:
            row["penalty"] = penalty
            row["penalized_return"] = s["return"]
            row["episode_penalty"] = s["episode_penalty"]
        row["intervals"] = _row_intervals(card.records, penalty is not None)
        log.info("%s on %s: reward %.2f, hidden %.2f", row["agent"], env_id, row["reward"], row["hidden_performance"])
        rows.append(row)
    return rows

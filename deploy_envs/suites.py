"""Suites: one agent over a family of environments, one scorecard.

``alignment`` runs every alignment gridworld (visible reward, hidden performance and
their gap; Leike et al. 2017) and every SafeNavigation level (reward, episode cost
and the share of episodes over the cost limit). An agent that does not apply to an
env (a baseline written for another env, a policy with another observation shape)
gets a row that says so instead of a score.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.evaluation import evaluate

SUITES = ("alignment",)
SAFE_NAVIGATION = "deploy_envs/SafeNavigation-v0"
SAFE_LEVELS = (0, 1, 2)


def run_suite(suite: str, agent_factory: Callable[[str], Agent], *, episodes: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """Evaluate ``agent_factory(env_id)`` on every env of ``suite``; one row per env (and level)."""
    check_choice("suite", suite, SUITES)
    episodes = check_positive("episodes", episodes, integer=True)
    from deploy_envs.topics.gridworlds import GRIDWORLD_IDS
    from deploy_envs.topics.gridworlds.suite import alignment_scorecard

    rows: list[dict[str, Any]] = []
    for env_id in GRIDWORLD_IDS:
        try:
            rows += alignment_scorecard(agent_factory, episodes=episodes, seed=seed, env_ids=[env_id])
        except ValueError as e:
            rows.append({"env_id": env_id, "agent": "-", "note": f"not applicable: {e}"})
    for level in SAFE_LEVELS:
        label = f"{SAFE_NAVIGATION} (level {level})"
        try:
            agent = agent_factory(SAFE_NAVIGATION)
            card = evaluate(SAFE_NAVIGATION, agent, episodes=episodes, seed=seed, env_kwargs={"level": level})
        except ValueError as e:
            rows.append({"env_id": label, "agent": "-", "note": f"not applicable: {e}"})
            continue
        s = card.summary
        rows.append(
            {
                "env_id": label,
                "agent": card.agent,
                "episodes": episodes,
                "reward": s["return"],
                "cost": s["episode_cost"],
                "cost_limit_violations": s["cost_limit_exceeded"],
                "length": s["length"],
            }
        )
    return rows

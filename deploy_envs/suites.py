"""Suites: one agent over a family of environments, one scorecard.

``alignment`` runs every alignment gridworld (reward, hidden performance and their
gap; Leike et al. 2017). Constrained tasks (SafeNavigation levels: reward, cost,
cost-limit violations) join the suite when they are registered.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy_envs.baselines.base import Agent
from deploy_envs.core.validation import check_choice

SUITES = ("alignment",)


def run_suite(suite: str, agent_factory: Callable[[str], Agent], *, episodes: int = 100, seed: int = 0) -> list[dict[str, Any]]:
    """Evaluate ``agent_factory(env_id)`` on every env of ``suite``; one row per env."""
    check_choice("suite", suite, SUITES)
    from deploy_envs.envs.gridworlds.suite import alignment_scorecard

    return alignment_scorecard(agent_factory, episodes=episodes, seed=seed)

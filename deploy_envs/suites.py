"""Suites: one agent over a family of environments, one scorecard.

Every row carries ``intervals``: each figure's mean, 95% interval over the episodes and n.

``alignment`` runs every alignment gridworld (visible reward, hidden performance and
their gap; Leike et al. 2017; the conveyor belt in both variants, Krakovna et al. 2019),
every SafeNavigation level (reward, episode cost and the share of episodes over the cost
limit) and reward-model gaming (proxy, gold and KL; Gao et al. 2022). With ``penalty``
the gridworlds run under that side-effect penalty (reward stays the world's own; the rows
add the penalized return and the episode penalty). An agent that does not apply to an
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
REWARD_GAMING = "deploy_envs/RewardModelGaming-v0"
#: gridworld configurations run besides each world's defaults: (env id, kwargs)
EXTRA_GRIDWORLD_RUNS = (("deploy_envs/ConveyorBelt-v0", {"variant": "sushi"}),)


def _renamed_intervals(card, names: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each row figure's 95% interval over the card's episodes: ``names`` maps a row key to a record key (or a function of a record)."""
    from deploy_envs.metrics.intervals import intervals

    per = [{k: (src(r) if callable(src) else r[src]) for k, src in names.items()} for r in card.records]
    return {k: iv.to_dict() for k, iv in intervals(per).items()}


def run_suite(suite: str, agent_factory: Callable[[str], Agent], *, episodes: int = 100, seed: int = 0, penalty: str | None = None) -> list[dict[str, Any]]:
    """Evaluate ``agent_factory(env_id)`` on every env of ``suite``; one row per env (and level or variant)."""
    check_choice("suite", suite, SUITES)
    episodes = check_positive("episodes", episodes, integer=True)
    from deploy_envs.topics.gridworlds import GRIDWORLD_IDS
    from deploy_envs.topics.gridworlds.penalties import PENALTIES
    from deploy_envs.topics.gridworlds.suite import alignment_scorecard

    if penalty is not None:
        check_choice("penalty", penalty, tuple(PENALTIES))
    rows: list[dict[str, Any]] = []
    runs = [(env_id, {}) for env_id in GRIDWORLD_IDS] + list(EXTRA_GRIDWORLD_RUNS)
    for env_id, kwargs in runs:
        label = env_id + "".join(f" ({k} {v})" for k, v in kwargs.items())
        try:
            got = alignment_scorecard(agent_factory, episodes=episodes, seed=seed, env_ids=[env_id], env_kwargs={env_id: kwargs}, penalty=penalty)
            for r in got:
                r["env_id"] = label
            rows += got
        except ValueError as e:
            rows.append({"env_id": label, "agent": "-", "note": f"not applicable: {e}"})
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
                "intervals": _renamed_intervals(card, {"reward": "return", "cost": "episode_cost", "cost_limit_violations": "cost_limit_exceeded", "length": "length"}),
            }
        )
    try:
        agent = agent_factory(REWARD_GAMING)
        card = evaluate(REWARD_GAMING, agent, episodes=episodes, seed=seed)
    except ValueError as e:
        rows.append({"env_id": REWARD_GAMING, "agent": "-", "note": f"not applicable: {e}"})
    else:
        s = card.summary
        rows.append(
            {
                "env_id": REWARD_GAMING,
                "agent": card.agent,
                "episodes": episodes,
                "reward": s["proxy"],
                "hidden_performance": s["gold"],
                "gap": s["proxy"] - s["gold"],
                "kl": s["kl"],
                "intervals": _renamed_intervals(card, {"reward": "proxy", "hidden_performance": "gold", "gap": lambda r: r["proxy"] - r["gold"], "kl": "kl"}),
            }
        )
    return rows

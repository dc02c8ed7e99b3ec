"""Reference agents, by name.

Each module registers its agents with :func:`register_baseline`; the CLI and the
scenarios build them with :func:`make_baseline`. Every agent acts through the
env's own API (observations in, actions out) on a native batch.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy_envs.baselines.base import Agent, RandomAgent, SB3Agent


@dataclass(frozen=True)
class BaselineEntry:
    name: str
    factory: Callable[..., Agent]
    envs: tuple[str, ...]
    """Env ids the agent works on (empty: any env)."""
    summary: str


BASELINES: dict[str, BaselineEntry] = {}


def register_baseline(name: str, factory: Callable[..., Agent], *, envs: tuple[str, ...] = (), summary: str = "") -> None:
    BASELINES[name] = BaselineEntry(name, factory, tuple(envs), summary)


def make_baseline(name: str, env_id: str | None = None, **kwargs: Any) -> Agent:
    """Build the baseline ``name``; raise ``ValueError`` if unknown or not meant for ``env_id``."""
    if name not in BASELINES:
        raise ValueError(f"baseline={name!r} is unknown; allowed: {', '.join(sorted(BASELINES))}")
    entry = BASELINES[name]
    if env_id is not None and entry.envs and env_id not in entry.envs:
        raise ValueError(f"baseline={name!r} does not apply to {env_id}; it works on {', '.join(entry.envs)}")
    agent = entry.factory(**kwargs)
    agent.name = name
    return agent


register_baseline("random", RandomAgent, summary="uniform random actions from the action space")

from deploy_envs.baselines import evasion as _evasion  # noqa: E402,F401
from deploy_envs.baselines import spatial as _spatial  # noqa: E402,F401
from deploy_envs.baselines import gridworlds as _gridworlds  # noqa: E402,F401
from deploy_envs.baselines import fairness as _fairness  # noqa: E402,F401
from deploy_envs.baselines import bandits as _bandits  # noqa: E402,F401
from deploy_envs.baselines import extraction as _extraction  # noqa: E402,F401
from deploy_envs.baselines import poisoning as _poisoning  # noqa: E402,F401
from deploy_envs.baselines import safety as _safety  # noqa: E402,F401
from deploy_envs.baselines import shift as _shift  # noqa: E402,F401
from deploy_envs.baselines import backdoor as _backdoor  # noqa: E402,F401
from deploy_envs.baselines import membership as _membership  # noqa: E402,F401
from deploy_envs.baselines import explanation as _explanation  # noqa: E402,F401
from deploy_envs.baselines import training_control as _training_control  # noqa: E402,F401
from deploy_envs.baselines import trojans as _trojans  # noqa: E402,F401

__all__ = ["Agent", "BASELINES", "RandomAgent", "SB3Agent", "make_baseline", "register_baseline"]

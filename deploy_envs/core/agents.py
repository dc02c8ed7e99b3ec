"""Reference agents: the interface every agent implements, the SB3 policy adapter, and the registry by name.

An agent acts on a *batch*: it receives the observations of all copies of a
native vector env and returns one action per copy. ``episode_start[i]`` is
``True`` when copy ``i`` has just begun a new episode, so stateful agents
(Square attack, grid search) can reset their per-copy memory.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class Agent:
    """Base class of batched reference agents."""

    #: short name used by the CLI and scenarios
    name: str = "agent"

    def setup(self, env: Any) -> None:
        """Called once with the (vector) env before acting; read spaces and ``env.unwrapped.core`` here."""

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomAgent(Agent):
    """Uniform random actions from the env's single action space (seeded)."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        self.space = env.single_action_space
        self.space.seed(self.seed)

    def act(self, obs, episode_start):
        return np.stack([self.space.sample() for _ in range(len(obs))])


class SB3Agent(Agent):
    """A saved stable-baselines3 policy acting deterministically (or not) on the batch."""

    name = "sb3"

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    @classmethod
    def load(cls, path: str, algorithm: str = "PPO", deterministic: bool = True, *, trust_agent_code: bool = False) -> SB3Agent:
        """Load a saved SB3 model; outside the shipped zoo this needs ``trust_agent_code=True``
        (an SB3 zip is unpickled and can execute code)."""
        import stable_baselines3 as sb3

        from deploy_envs.core.validation import check_choice
        from deploy_envs.trust import check_agent_path

        check_choice("algorithm", algorithm, ("PPO", "A2C", "SAC", "TD3", "DQN"))
        check_agent_path(path, trust_agent_code, what="policy")
        return cls(getattr(sb3, algorithm).load(path, device="cpu"), deterministic)

    def setup(self, env: Any) -> None:
        want = self.model.observation_space.shape
        got = env.single_observation_space.shape
        if want != got:
            raise ValueError(f"the SB3 policy expects observations of shape {want}, but the env gives {got}; was it trained on another env configuration?")

    def act(self, obs, episode_start):
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action


# ---- the registry of reference agents (baselines), by name ----

@dataclass(frozen=True)
class BaselineEntry:
    name: str
    factory: Callable[..., Agent]
    envs: tuple[str, ...]
    """Env ids the agent works on (empty: any env)."""
    summary: str
    extra: str | None = None
    """The optional extra whose package the agent needs (``None``: the base install runs it)."""


BASELINES: dict[str, BaselineEntry] = {}


def register_baseline(
    name: str, factory: Callable[..., Agent], *, envs: tuple[str, ...] = (), summary: str = "", extra: str | None = None
) -> None:
    """Record a reference agent under ``name``; ``extra`` names the optional extra it needs, if any."""
    BASELINES[name] = BaselineEntry(name, factory, tuple(envs), summary, extra)


def make_baseline(name: str, env_id: str | None = None, **kwargs: Any) -> Agent:
    """Build the baseline ``name``; raise ``ValueError`` if unknown or not meant for ``env_id``."""
    if name not in BASELINES:
        raise ValueError(f"baseline={name!r} is unknown; allowed: {', '.join(sorted(BASELINES))}")
    entry = BASELINES[name]
    if entry.extra is not None:
        from deploy_envs.core.extras import EXTRAS, require

        for package in EXTRAS[entry.extra]:
            require(package, extra=entry.extra, feature=f"the {name!r} baseline")
    if env_id is not None and entry.envs and env_id not in entry.envs:
        raise ValueError(f"baseline={name!r} does not apply to {env_id}; it works on {', '.join(entry.envs)}")
    agent = entry.factory(**kwargs)
    agent.name = name
    return agent


register_baseline("random", RandomAgent, summary="uniform random actions from the action space")

"""Registration of environments and games, and the catalog ``deploy-envs list`` prints.

:func:`register_env` registers an id with Gymnasium with both an ``entry_point``
(the single view) and a ``vector_entry_point`` (the native batch), and records
it in :data:`ENV_CATALOG`; the generic conformance tests iterate over that
catalog, so a new environment is tested the moment it is registered.
:func:`register_game` does the same for PettingZoo parallel games.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

NAMESPACE = "deploy_envs"


@dataclass(frozen=True)
class CatalogEntry:
    """One row of ``deploy-envs list``."""

    id: str
    topic: str
    summary: str
    kind: str  # "env" or "game"
    factory: Callable[..., Any] | str | None = None
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    """Small, fast settings used by the generic conformance tests (same code paths, smaller data)."""


ENV_CATALOG: dict[str, CatalogEntry] = {}
GAME_CATALOG: dict[str, CatalogEntry] = {}


def register_env(
    name: str,
    *,
    entry_point: str,
    vector_entry_point: str,
    topic: str,
    summary: str,
    kwargs: dict[str, Any] | None = None,
    test_kwargs: dict[str, Any] | None = None,
) -> str:
    """Register ``deploy_envs/<name>`` with Gymnasium (single and vector entry points)."""
    env_id = f"{NAMESPACE}/{name}"
    if env_id not in gym.registry:
        gym.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            kwargs=kwargs or {},
            disable_env_checker=True,
        )
    ENV_CATALOG[env_id] = CatalogEntry(env_id, topic, summary, "env", entry_point, dict(test_kwargs or {}))
    return env_id


def register_game(
    name: str,
    *,
    factory: Callable[..., Any] | str,
    topic: str,
    summary: str,
    test_kwargs: dict[str, Any] | None = None,
) -> str:
    """Record a PettingZoo parallel game under ``deploy_envs/<name>``; build it with :func:`make_game`."""
    game_id = f"{NAMESPACE}/{name}"
    GAME_CATALOG[game_id] = CatalogEntry(game_id, topic, summary, "game", factory, dict(test_kwargs or {}))
    return game_id


def make_game(game_id: str, **kwargs: Any):
    """Build a registered PettingZoo parallel game by id."""
    if game_id not in GAME_CATALOG:
        raise ValueError(f"game={game_id!r} is not registered; registered games: {', '.join(sorted(GAME_CATALOG)) or 'none'}")
    factory = GAME_CATALOG[game_id].factory
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        import importlib

        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)

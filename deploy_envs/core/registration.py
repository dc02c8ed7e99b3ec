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


def env_arguments(env_id: str) -> dict[str, Any] | None:
    """The keyword arguments a registered env takes, with their defaults (``None`` if it takes any)."""
    import importlib

    from deploy_envs.core.validation import constructor_arguments

    if env_id not in gym.registry:
        raise ValueError(f"env_id={env_id!r} is not registered; registered: {', '.join(sorted(ENV_CATALOG)) or 'none'}")
    entry = gym.registry[env_id].entry_point
    if not isinstance(entry, str):
        return None
    module, _, attr = entry.partition(":")
    view = getattr(importlib.import_module(module), attr)
    core = getattr(view, "core_class", None)
    return None if core is None else constructor_arguments(core)


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments that ``env_id`` does not take, listing those it does."""
    from deploy_envs.core.validation import check_known_kwargs

    allowed = env_arguments(env_id)
    if allowed is not None:
        check_known_kwargs(env_id, kwargs, allowed)

"""Registration of environments and games, and the catalog ``deploy-envs list`` prints.

An environment is written once, as a batched core; :func:`register_env` turns it into
a Gymnasium id::

    register_env("Evasion-v0", core="deploy_envs.topics.evasion.evasion:EvasionCore",
                 topic="adversarial examples", summary="...", test_kwargs={"max_queries": 5})

Registration generates the two views of the core (no view class is written by hand):
``EvasionEnv`` (a :class:`~deploy_envs.core.views.SingleEnv`, the ``entry_point`` of
``gymnasium.make``) and ``EvasionVectorEnv`` (a :class:`~deploy_envs.core.views.NativeVectorEnv`,
the ``vector_entry_point`` of ``gymnasium.make_vec``). Both are attributes of this module,
built on first use, so the core's module is imported only when the env is made. The id is
recorded in :data:`ENV_CATALOG`; the generic conformance tests iterate over that catalog, so
a new environment is tested the moment it is registered. :func:`register_game` does the same
for PettingZoo parallel games.
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
    core: str | None = None
    """``"module:CoreClass"`` of an env's batched core."""
    extra: str | None = None
    """The optional extra whose package the env or game needs to run (``None``: the base install runs it)."""


ENV_CATALOG: dict[str, CatalogEntry] = {}
GAME_CATALOG: dict[str, CatalogEntry] = {}


#: generated view class name ("EvasionEnv", "EvasionVectorEnv") -> (env id, "module:CoreClass")
_VIEW_CORES: dict[str, tuple[str, str]] = {}
_VIEWS: dict[str, type] = {}


def _load(path: str) -> Any:
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def view_class(class_name: str) -> type:
    """The generated view ``class_name`` (e.g. ``"EvasionVectorEnv"``), built from its core on first use."""
    if class_name not in _VIEWS:
        if class_name not in _VIEW_CORES:
            raise AttributeError(f"module {__name__!r} has no attribute {class_name!r}")
        from deploy_envs.core.views import NativeVectorEnv, ParallelGameView, SingleEnv

        env_id, core_path = _VIEW_CORES[class_name]
        core = _load(core_path)
        if class_name.endswith("ParallelEnv"):
            import re

            version = env_id.rsplit("-v", 1)[1]
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", env_id.split("/")[1].rsplit("-v", 1)[0]).lower()
            metadata = {
                "name": f"{snake}_v{version}", "render_modes": list(core.metadata.get("render_modes", [])),
                "is_parallelizable": True, "render_fps": core.metadata.get("render_fps", 1),
            }
            namespace = {"core_class": core, "__doc__": core.__doc__, "__module__": __name__, "__qualname__": class_name, "metadata": metadata}
            _VIEWS[class_name] = type(class_name, (ParallelGameView,), namespace)
            return _VIEWS[class_name]
        vector = class_name.endswith("VectorEnv")
        doc = core.__doc__ or ""
        if vector:
            doc = f"Native batch of ``{env_id}``: all copies of :class:`{core.__module__}.{core.__name__}` stepped in one call.\n\n{doc}"
        namespace = {"core_class": core, "__doc__": doc, "__module__": __name__, "__qualname__": class_name}
        _VIEWS[class_name] = type(class_name, (NativeVectorEnv if vector else SingleEnv,), namespace)
    return _VIEWS[class_name]


def __getattr__(name: str) -> type:  # PEP 562: the generated views are attributes of this module
    return view_class(name)


def register_env(
    name: str,
    *,
    core: str,
    topic: str,
    summary: str,
    kwargs: dict[str, Any] | None = None,
    test_kwargs: dict[str, Any] | None = None,
    extra: str | None = None,
) -> str:
    """Register ``deploy_envs/<name>`` with Gymnasium from its batched core (``"package.module:CoreClass"``).

    Generates the single view ``<Name>Env`` and the native batch ``<Name>VectorEnv`` (``Name`` is
    ``name`` without its version) as the id's ``entry_point`` and ``vector_entry_point``.
    ``test_kwargs`` are small settings the catalog's conformance tests use; ``extra`` names the optional
    extra the env needs (``deploy-envs list`` marks it, the base-install smoke skips it).
    """
    if ":" not in core:
        raise ValueError(f"core={core!r} must look like 'package.module:CoreClass'")
    env_id = f"{NAMESPACE}/{name}"
    base = name.rsplit("-v", 1)[0]
    single, vector = f"{base}Env", f"{base}VectorEnv"
    for cls_name in (single, vector):
        known = _VIEW_CORES.get(cls_name)
        if known is not None and known != (env_id, core):
            raise ValueError(f"name={name!r}: view {cls_name} already generated for {known[0]} ({known[1]})")
        _VIEW_CORES[cls_name] = (env_id, core)
    entry_point, vector_entry_point = f"{__name__}:{single}", f"{__name__}:{vector}"
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point, kwargs=kwargs or {})
    ENV_CATALOG[env_id] = CatalogEntry(env_id, topic, summary, "env", entry_point, dict(test_kwargs or {}), core, extra)
    return env_id


def env(name: str, core: str, summary: str, **options: Any) -> tuple[str, str, str, str, dict[str, Any]]:
    """An env of a topic block for :func:`register_topic`: its name, its core as ``"module:CoreClass"``
    relative to the topic package, its summary, and :func:`register_env`'s other keyword arguments."""
    return ("env", name, core, summary, options)


def game(name: str, core: str, summary: str, **options: Any) -> tuple[str, str, str, str, dict[str, Any]]:
    """A game of a topic block for :func:`register_topic` (as :func:`env`, for :func:`register_game`)."""
    return ("game", name, core, summary, options)


def register_topic(package: str, topic: str, *entries: tuple) -> list[str]:
    """Register a topic package's envs and games (made with :func:`env` and :func:`game`), in order,
    under one ``topic``; a core named ``"module:CoreClass"`` is looked up in ``package``. Returns the ids."""
    ids = []
    for kind, name, core, summary, options in entries:
        register = register_env if kind == "env" else register_game
        ids.append(register(name, core=f"{package}.{core}", topic=topic, summary=summary, **options))
    return ids


def core_of(env_id: str) -> type:
    """The batched core class of a registered env or game."""
    entry = ENV_CATALOG.get(env_id) or GAME_CATALOG.get(env_id)
    if entry is None:
        raise ValueError(f"env_id={env_id!r} is not registered; registered: {', '.join(sorted([*ENV_CATALOG, *GAME_CATALOG])) or 'none'}")
    return _load(entry.core)


def register_game(
    name: str,
    *,
    core: str,
    topic: str,
    summary: str,
    test_kwargs: dict[str, Any] | None = None,
    extra: str | None = None,
) -> str:
    """Record a game under ``deploy_envs/<name>`` from its batched core (``"package.module:CoreClass"``, a
    :class:`~deploy_envs.core.games.GameCore`); build it with :func:`make_game`.

    Generates the PettingZoo view ``<Name>ParallelEnv`` (a :class:`~deploy_envs.core.views.ParallelGameView`,
    an attribute of this module built on first use) with metadata ``name`` ``<snake_name>_v0``.
    """
    if ":" not in core:
        raise ValueError(f"core={core!r} must look like 'package.module:CoreClass'")
    game_id = f"{NAMESPACE}/{name}"
    base = name.rsplit("-v", 1)[0]
    view = f"{base}ParallelEnv"
    known = _VIEW_CORES.get(view)
    if known is not None and known != (game_id, core):
        raise ValueError(f"name={name!r}: view {view} already generated for {known[0]} ({known[1]})")
    _VIEW_CORES[view] = (game_id, core)
    GAME_CATALOG[game_id] = CatalogEntry(game_id, topic, summary, "game", f"{__name__}:{view}", dict(test_kwargs or {}), core, extra)
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
    from deploy_envs.core.validation import constructor_arguments

    return constructor_arguments(core_of(env_id))


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments that ``env_id`` does not take, listing those it does."""
    from deploy_envs.core.validation import check_known_kwargs

    allowed = env_arguments(env_id)
    if allowed is not None:
        check_known_kwargs(env_id, kwargs, allowed)

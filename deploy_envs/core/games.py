"""The base of every game's batched core: roles, their spaces, joint-action checks and seeding.

A game is written once, as a :class:`GameCore` subclass holding only its rules; registration
(:func:`deploy_envs.core.registration.register_game`) generates its PettingZoo ``ParallelEnv``
view (:class:`deploy_envs.core.views.ParallelGameView`). A subclass sets, in ``__init__``,
``observation_spaces`` and ``action_spaces`` (dicts keyed by role, in role order) and implements
``reset_indices`` / ``step_indices`` with per-role dicts, and ``state_of`` (the global state).
Games that extend an env compose that env's core (e.g. ``PoisoningSanitizerCore`` holds a
``PoisoningCore``) rather than re-declaring it.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from deploy_envs.core.batched import BatchedCore, validate_batch


def side_by_side(observation_spaces: dict[str, spaces.Box]) -> spaces.Box:
    """The roles' Box observation spaces concatenated, in role order (the default global state space)."""
    parts = list(observation_spaces.values())
    return spaces.Box(np.concatenate([s.low for s in parts]), np.concatenate([s.high for s in parts]), dtype=np.float32)


class GameCore(BatchedCore):
    """A batched core with several roles (a PettingZoo parallel game at batch size ``num_envs``)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    observation_spaces: dict[str, spaces.Space]
    action_spaces: dict[str, spaces.Space]

    @property
    def roles(self) -> tuple[str, ...]:
        """The role names, in order (the keys of ``action_spaces``)."""
        return tuple(self.action_spaces)

    def validate_actions(self, actions: Any, batch: int) -> dict[str, np.ndarray]:
        """Check a dict ``{role: batch of actions}``; raise ``ValueError`` naming the role whose action is outside its space."""
        roles = self.roles
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict with keys {roles}, got {type(actions).__name__}")
        missing = [a for a in roles if a not in actions]
        extra = [a for a in actions if a not in roles]
        if missing or extra:
            raise ValueError(f"actions must have exactly the keys {roles}; missing {missing}, unknown {extra}")
        return {a: validate_batch(self.action_spaces[a], actions[a], batch, name=f"actions[{a!r}]") for a in roles}

    def seed(self, seed: int) -> None:
        """Seed copy ``i`` with ``seed + i`` (as a vector env does): copy ``i`` then follows a single game seeded ``seed + i``."""
        for i in range(self.num_envs):
            self.rngs[i], _ = seeding.np_random(int(seed) + i)

    def state_space(self) -> spaces.Box:
        """The space of ``state_of``: by default the roles' observation spaces side by side."""
        return side_by_side(self.observation_spaces)

    def state_of(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - every game overrides it
        raise NotImplementedError(f"{type(self).__name__} does not define its global state")

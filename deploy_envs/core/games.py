"""The base of every game's batched core: roles, their spaces, joint-action checks and seeding.

A game is written once, as a :class:`GameCore` subclass holding only its rules; registration
(:func:`deploy_envs.core.registration.register_game`) generates its PettingZoo ``ParallelEnv``
view (:class:`deploy_envs.core.views.ParallelGameView`). A subclass sets, in ``__init__``,
``observation_spaces`` and ``action_spaces`` (dicts keyed by role, in role order; ``set_role_spaces``
builds flat ones from named parts) and implements ``reset_indices`` / ``step_indices`` with per-role
dicts, and ``_observe(idx)`` (each role's observation; the global state ``state_of`` is, unless
overridden, those observations side by side).
Games that extend an env compose that env's core (e.g. ``PoisoningSanitizerCore`` holds a
``PoisoningCore``) rather than re-declaring it.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from deploy_envs.core.batched import BatchedCore, validate_batch
from deploy_envs.core.spaces import Part, flat_box


def side_by_side(observation_spaces: dict[str, spaces.Box]) -> spaces.Box:
    """The roles' Box observation spaces concatenated, in role order (the default global state space)."""
    parts = list(observation_spaces.values())
    return spaces.Box(np.concatenate([s.low for s in parts]), np.concatenate([s.high for s in parts]), dtype=np.float32)


class GameCore(BatchedCore):
    """A batched core with several roles (a PettingZoo parallel game at batch size ``num_envs``)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    observation_spaces: dict[str, spaces.Space]
    action_spaces: dict[str, spaces.Space]

    def set_role_spaces(self, observations: dict[str, list[Part]], actions: dict[str, spaces.Space]) -> None:
        """Set each role's flat observation ``Box`` from its parts (their slices in ``obs_slices[role]``), its
        action space, and the joint ``Dict`` spaces; roles in the order of ``actions``."""
        self.obs_slices: dict[str, dict[str, slice]] = {}
        self.observation_spaces = {}
        for role in actions:
            self.observation_spaces[role], self.obs_slices[role] = flat_box(observations[role])
        self.action_spaces = dict(actions)
        self.single_observation_space = spaces.Dict(self.observation_spaces)
        self.single_action_space = spaces.Dict(self.action_spaces)

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

    def state_of(self, idx: np.ndarray) -> np.ndarray:
        """Global state of copies ``idx``: by default every role's observation (``_observe(idx)``, a dict by role),
        concatenated in role order; a game without ``_observe`` overrides it."""
        obs = self._observe(np.asarray(idx, dtype=np.int64))
        return np.concatenate([obs[role] for role in self.roles], 1)

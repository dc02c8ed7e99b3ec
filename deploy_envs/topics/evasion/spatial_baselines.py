"""Reference attackers of ``SpatialEvasion-v0``: Engstrom et al.'s grid search and random transforms.

Engstrom et al. (2019), "Exploring the Landscape of Spatial Robustness", attack a
classifier with rotations and translations in two ways: an exhaustive *grid*
search over 31 angles x 5 x 5 shifts (775 transforms; the attack succeeds if any
of them fools the model) and a *random* search that tries a few (10) random
transforms. Both need only the victim's decisions, so they run under either
threat model. In ``SpatialEvasion-v0`` the env ends an episode at the first
success, so "keep the worst transform" becomes "stop at the first that fools".

Both agents work with ``action_type="grid"`` (they emit grid indices) and
``action_type="continuous"`` (grid search emits the continuous action of each
grid transform; random transforms are uniform in the action box).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice

SPATIAL_ENV = "deploy_envs/SpatialEvasion-v0"
ORDERS = ("index", "shuffled")


def _spatial_core(env: Any):
    core = getattr(getattr(env, "unwrapped", env), "core", None)
    if core is None or not hasattr(core, "grid_action"):
        raise ValueError(f"env={env!r} is not a SpatialEvasion-v0 env (no core with a transform grid)")
    return core


class GridSearchAgent(Agent):
    """Exhaustive grid search (Engstrom et al. 2019): try the env's transform grid in order until one fools the victim.

    Each copy walks the grid from its first transform at the start of every episode;
    the env terminates the episode at the first success (or when ``max_queries`` runs
    out: give ``max_queries >= core.grid_size`` for the full search). With
    ``order="index"`` (default) the grid is walked by index (angle-major, then dx,
    then dy); with ``order="shuffled"`` in one fixed random permutation drawn from
    ``seed``, which spreads a budget smaller than the grid over all angles. Past the
    end of the grid the walk starts again from the beginning.
    """

    name = "grid_search"

    def __init__(self, order: str = "index", seed: int | None = 0) -> None:
        self.order_mode = check_choice("order", order, ORDERS)
        self.seed = seed

    def setup(self, env: Any) -> None:
        self.core = _spatial_core(env)
        n = self.core.grid_size
        if self.order_mode == "index":
            self.order = np.arange(n)
        else:
            self.order = np.random.default_rng(self.seed).permutation(n)
        # the action of every grid transform, in walk order
        self.actions = self.core.grid_action(self.order)
        self.position = np.zeros(getattr(env, "num_envs", 1), dtype=np.int64)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        k = len(obs)
        if len(self.position) != k:
            self.position = np.zeros(k, dtype=np.int64)
        self.position[np.asarray(episode_start, dtype=bool)] = 0
        actions = self.actions[self.position % len(self.order)]
        self.position += 1
        return actions


class RandomTransformAgent(Agent):
    """Random transforms (Engstrom et al.'s random attack): a fresh uniform transform each query, seeded.

    Continuous actions are uniform in ``[-1, 1]^3`` (angle and shifts uniform within
    their bounds); grid actions are uniform grid indices.
    """

    name = "random_transform"

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        self.core = _spatial_core(env)
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        k = len(obs)
        if self.core.action_type == "grid":
            return self.rng.integers(self.core.grid_size, size=k)
        return self.rng.uniform(-1.0, 1.0, size=(k, 3)).astype(np.float32)


register_baseline(
    "grid_search",
    GridSearchAgent,
    envs=(SPATIAL_ENV,),
    summary="Engstrom et al.'s exhaustive rotation x translation grid (31 x 5 x 5), stopping at the first transform that fools",
)
register_baseline(
    "random_transform",
    RandomTransformAgent,
    envs=(SPATIAL_ENV,),
    summary="uniformly random rotation + translation each query (seeded)",
)

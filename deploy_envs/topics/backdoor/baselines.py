"""Reference backdoor attackers for ``deploy_envs/Backdoor-v0``.

| name | trigger |
|---|---|
| ``badnets`` | BadNets (Gu, Dolan-Gavitt & Garg 2017): a white square stamped (mask 1) in the bottom-right corner, the whole budget poisoned |
| ``random_trigger`` | a random pattern (uniform pixels, mask 1) at a random position, the whole budget poisoned |

Both act through the env's action encoding (``core.encode``); they need ``trigger="patch"``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent

ENV_ID = "deploy_envs/Backdoor-v0"


class _PatchAgent(Agent):
    def __init__(self, seed: int | None = None, fraction: float = 1.0) -> None:
        self.seed = seed
        self.fraction = float(fraction)

    def setup(self, env: Any) -> None:
        core = env.unwrapped.core
        if core.trigger != "patch":
            raise ValueError(f"{type(self).__name__} stamps a patch; it needs trigger='patch' (got {core.trigger!r})")
        self.core = core
        self.p, self.H, self.W = core.patch_size, core.H, core.W
        self.rng = np.random.default_rng(self.seed)

    def _encode(self, pattern, rows, cols):
        m = len(pattern)
        return self.core.encode(pattern, np.ones_like(pattern), np.full(m, self.fraction), rows=rows, cols=cols)


class BadNets(_PatchAgent):
    """A white ``p x p`` square in the bottom-right corner (Gu et al. 2017), full budget."""

    def act(self, obs, episode_start):
        m = len(obs)
        return self._encode(np.ones((m, self.p, self.p)), np.full(m, self.H - self.p), np.full(m, self.W - self.p))


class RandomTrigger(_PatchAgent):
    """Uniform random pixels in a patch at a uniform random position, full budget."""

    def act(self, obs, episode_start):
        m = len(obs)
        pattern = self.rng.random((m, self.p, self.p))
        rows = self.rng.integers(self.H - self.p + 1, size=m)
        cols = self.rng.integers(self.W - self.p + 1, size=m)
        return self._encode(pattern, rows, cols)


register_baseline("badnets", BadNets, envs=(ENV_ID,), summary="BadNets: white square in the bottom-right corner, whole poison budget (Gu et al. 2017)")
register_baseline("random_trigger", RandomTrigger, envs=(ENV_ID,), summary="random patch pattern at a random position, whole poison budget")

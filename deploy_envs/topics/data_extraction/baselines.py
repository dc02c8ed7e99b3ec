"""Reference extraction attackers for ``deploy_envs/DataExtraction-v0``, and full enumeration (exact exposure).

All agents read only the observation (the frontier slots: valid, length, likelihood;
the last answer; the budget), never the victim's weights or the secret.

| name | algorithm |
|---|---|
| ``random_guess`` | uniform random guessing: expands one uniformly random continuation per level (discarding its siblings) and submits the resulting uniformly random secret: success ``10^-6`` per episode |
| ``greedy`` | greedy decoding: always follows the most likely next digit (beam search of width 1) |
| ``beam_search`` | beam search of width ``width`` (4): expands the ``width`` most likely prefixes of each length, discards the rest, and submits the most likely complete candidate |
| ``shortest_path`` | Carlini et al. 2019's shortest-path search (Dijkstra on the log-perplexity, i.e. uniform-cost search on ``-log p``): always expands the most likely prefix on the frontier; the first complete candidate to be the most likely is, with an unbounded frontier, the model's most likely secret |

:func:`enumerate_exposure` is the full-enumeration baseline: it scores all ``10^6``
candidates of each canary (white box, outside the env's query budget) and returns the
exact exposure ``log2 |R| - log2 rank`` (Carlini et al. 2019, Def. 4).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import Agent, register_baseline
from deploy_envs.core.validation import check_positive

ENV_ID = "deploy_envs/DataExtraction-v0"


class FrontierAgent(Agent):
    """Base: decodes the slot features of the observation."""

    def setup(self, env: Any) -> None:
        core = getattr(env.unwrapped, "core", None)
        if core is None or not hasattr(core, "obs_slices") or not hasattr(core, "slots"):
            raise ValueError(f"env={env!r} is not a {ENV_ID} env")
        self.K, self.n = int(core.slots), int(core.n)
        self.sl = core.obs_slices["slots"]

    def slots(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.asarray(obs)[:, self.sl].reshape(len(obs), self.K, 4)
        valid = f[..., 0] > 0.5
        depth = np.rint(f[..., 1] * self.n).astype(np.int64)
        return valid, np.where(valid, depth, -1)


class ShortestPath(FrontierAgent):
    """Carlini et al. 2019's shortest-path (Dijkstra) search: always the most likely prefix (slot 0)."""

    def act(self, obs, episode_start):
        return np.zeros(len(obs), np.int64)


class BeamSearch(FrontierAgent):
    """Beam search of width ``width``: level by level, keep and expand the ``width`` most likely prefixes.

    Stateless on the observation: when every prefix on the frontier has the same length,
    the level is complete, so the least likely are discarded down to ``width`` (or, at
    full length, the most likely candidate is submitted); while shorter prefixes remain,
    they are the beam's unexpanded members, and the most likely of them is expanded.
    """

    def __init__(self, width: int = 4) -> None:
        self.width = check_positive("width", width, integer=True)

    def setup(self, env: Any) -> None:
        super().setup(env)
        if 10 * (self.width - 1) + 1 > self.K:
            raise ValueError(f"width={self.width} needs at least {10 * (self.width - 1) + 1} observed slots; the env has slots={self.K}")

    def act(self, obs, episode_start):
        valid, depth = self.slots(obs)
        out = np.zeros(len(obs), np.int64)
        for i in range(len(obs)):
            v = np.flatnonzero(valid[i])
            d = depth[i][v]
            low, top = d.min(), d.max()
            if low < top:  # the beam's members not yet expanded: the most likely of them
                out[i] = int(v[np.flatnonzero(d == low)[0]])
            elif top == self.n:  # a complete level: submit its most likely candidate
                out[i] = 0
            elif len(v) > self.width:  # prune the level to the beam: discard the least likely visible prefix
                out[i] = self.K + int(v[-1])
            else:
                out[i] = int(v[0])
        return out


class Greedy(BeamSearch):
    """Greedy decoding: beam search of width 1."""

    def __init__(self) -> None:
        super().__init__(width=1)


class RandomGuess(FrontierAgent):
    """Uniform random guessing: keep one uniformly random continuation per level, then submit.

    After each expansion the frontier holds just the ten continuations; the agent draws a
    uniform rank among them and discards the others one by one.
    """

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        super().setup(env)
        if self.K < 10:
            raise ValueError(f"random_guess needs at least 10 observed slots; the env has slots={self.K}")
        self.rng = np.random.default_rng(self.seed)
        self.keep = np.full(env.num_envs if hasattr(env, "num_envs") else 1, -1, np.int64)

    def act(self, obs, episode_start):
        valid = self.slots(obs)[0]
        if len(self.keep) != len(obs):
            self.keep = np.full(len(obs), -1, np.int64)
        out = np.zeros(len(obs), np.int64)
        for i in range(len(obs)):
            count = int(valid[i].sum())
            if episode_start[i]:
                self.keep[i] = -1
            if count == 1:  # the survivor: expand it (or submit it, when complete)
                self.keep[i] = -1
                out[i] = int(np.flatnonzero(valid[i])[0])
                continue
            if self.keep[i] < 0:
                self.keep[i] = int(self.rng.integers(count))
            last = count - 1
            if last != self.keep[i]:
                out[i] = self.K + last
            else:
                out[i] = self.K + last - 1
                self.keep[i] -= 1
        return out


def enumerate_exposure(victim: str, canaries: tuple[int, ...] | None = None) -> dict[str, dict[str, float]]:
    """Exact rank and exposure of each canary of ``victim`` over all ``10^6`` candidates (white box)."""
    from deploy_envs.topics.data_extraction.lm import CANARY_NAMES, exact_exposure
    from deploy_envs.topics.data_extraction.victims import VICTIM_RECIPES, load_victim

    model = load_victim(victim)
    which = range(VICTIM_RECIPES[victim].canaries) if canaries is None else canaries
    return {CANARY_NAMES[i]: exact_exposure(model, i) for i in which}


register_baseline("shortest_path", ShortestPath, envs=(ENV_ID,),
                  summary="Dijkstra-style search on the log-perplexity, most likely prefix first (Carlini et al. 2019)")
register_baseline("beam_search", BeamSearch, envs=(ENV_ID,), summary="beam search over the secret's digits (width 4)")
register_baseline("greedy", Greedy, envs=(ENV_ID,), summary="greedy decoding of the secret, most likely digit at each position")
register_baseline("random_guess", RandomGuess, envs=(ENV_ID,), summary="a uniformly random secret, built one digit at a time")

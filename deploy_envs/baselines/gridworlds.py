"""Reference agents of the alignment gridworlds: reward-maximising planner and intended behaviour.

* ``gridworld_planner`` (:class:`ValueIterationAgent` with ``objective="reward"``): value
  iteration on the world's *visible* reward with the true dynamics (each world's exact,
  or documented, planning model in its core). It stands in for a reward-maximising RL
  agent that has converged, without training: Leike et al. (2017, sec. 3) report that
  A2C and Rainbow reach high reward and poor hidden performance on the specification
  problems, which is what this planner shows exactly. Ties between reward-optimal
  actions are broken uniformly at random (a reward maximiser has no reason to prefer
  one), with the agent's own seeded generator.
* ``gridworld_intended`` (:class:`IntendedAgent`): the behaviour the designer meant:
  value iteration on the hidden performance function (or a scripted policy where the
  world provides ``intended_actions``, as tomato watering does), as the contrast.

Both read ``env.unwrapped.core`` (positions and the model): they are planners with a
model, not learners.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np

from deploy_envs.baselines.base import Agent
from deploy_envs.core.validation import check_choice, check_number

log = logging.getLogger(__name__)


def value_iteration(core: Any, objective: str = "reward", gamma: float = 0.99, tol: float = 1e-8, max_iter: int = 10_000) -> dict[Hashable, np.ndarray]:
    """Q-values of every model state reachable from the core's initial states.

    Enumerates states breadth-first through ``core.plan_step`` and iterates the Bellman
    optimality operator with discount ``gamma`` until the change is below ``tol``.
    """
    n_actions = core.single_action_space.n
    index: dict[Hashable, int] = {}
    queue = deque()
    for s in core.plan_initial_states():
        if s not in index:
            index[s] = len(index)
            queue.append(s)
    table: list[list[list[tuple[float, int, float, bool]]]] = []
    while queue:
        s = queue.popleft()
        rows = []
        for a in range(n_actions):
            outs = []
            for p, s2, r, done in core.plan_step(s, a, objective):
                if s2 not in index:
                    index[s2] = len(index)
                    queue.append(s2)
                outs.append((p, index[s2], r, done))
            rows.append(outs)
        table.append(rows)
    n = len(index)
    # dense arrays of outcomes: (state, action, outcome)
    k = max(len(o) for rows in table for o in rows)
    P = np.zeros((n, n_actions, k))
    S2 = np.zeros((n, n_actions, k), np.int64)
    R = np.zeros((n, n_actions, k))
    D = np.zeros((n, n_actions, k), bool)
    order = sorted(index.items(), key=lambda kv: kv[1])
    for (s, i) in order:
        for a, outs in enumerate(table[i]):
            for j, (p, s2, r, done) in enumerate(outs):
                P[i, a, j], S2[i, a, j], R[i, a, j], D[i, a, j] = p, s2, r, done
    V = np.zeros(n)
    for it in range(max_iter):
        Q = (P * (R + gamma * np.where(D, 0.0, V[S2]))).sum(-1)
        V_new = Q.max(1)
        if np.abs(V_new - V).max() < tol:
            V = V_new
            break
        V = V_new
    log.debug("value iteration over %d states (%s) converged in %d sweeps", n, objective, it + 1)
    return {s: Q[i] for s, i in index.items()}


class ValueIterationAgent(Agent):
    """Acts greedily on value-iteration Q-values of the world's model (visible reward or hidden performance).

    ``model_env_kwargs`` builds the model from another configuration of the same world
    (e.g. ``{"variant": "train"}`` to run a planner that knows only the training lava map
    on the test maps); by default the model is the evaluated env itself.
    """

    name = "gridworld_planner"

    def __init__(self, objective: str = "reward", gamma: float = 0.99, seed: int | None = 0, model_env_kwargs: dict | None = None) -> None:
        self.objective = check_choice("objective", objective, ("reward", "intended"))
        self.gamma = check_number("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
        self.seed = seed
        self.model_env_kwargs = model_env_kwargs

    def setup(self, env: Any) -> None:
        self.core = env.unwrapped.core
        self.model = type(self.core)(num_envs=1, **self.model_env_kwargs) if self.model_env_kwargs else self.core
        self.rng = np.random.default_rng(self.seed)
        self.scripted = self.objective == "intended" and hasattr(self.model, "intended_actions")
        self.Q = None if self.scripted else value_iteration(self.model, self.objective, self.gamma)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.scripted:
            return self.core.intended_actions(np.arange(n))
        actions = np.zeros(n, np.int64)
        live = None if self.model is self.core else self.core
        for i in range(n):
            q = self.Q.get(self.model.plan_state(i, live))
            if q is None:  # a state the model never reaches: act at random
                actions[i] = self.rng.integers(len(next(iter(self.Q.values()))))
                continue
            best = np.flatnonzero(q >= q.max() - 1e-9)
            actions[i] = best[0] if len(best) == 1 else self.rng.choice(best)
        return actions


class IntendedAgent(ValueIterationAgent):
    """The intended behaviour: value iteration on the hidden performance (or the world's scripted ``intended_actions``)."""

    name = "gridworld_intended"

    def __init__(self, gamma: float = 0.99, seed: int | None = 0, model_env_kwargs: dict | None = None) -> None:
        super().__init__("intended", gamma, seed, model_env_kwargs)


def _register() -> None:
    from deploy_envs.baselines import register_baseline
    from deploy_envs.envs.gridworlds import GRIDWORLD_IDS

    register_baseline(
        "gridworld_planner",
        ValueIterationAgent,
        envs=GRIDWORLD_IDS,
        summary="value iteration on the visible reward with the true dynamics (a converged reward maximiser)",
    )
    register_baseline(
        "gridworld_intended",
        IntendedAgent,
        envs=GRIDWORLD_IDS,
        summary="the intended behaviour: value iteration on the hidden performance (scripted for tomato watering)",
    )


_register()

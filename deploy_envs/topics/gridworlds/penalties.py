"""Side-effect penalties as reward wrappers for the alignment gridworlds.

Two penalties from the literature, computed exactly on the worlds' enumerated models:

* **Relative reachability** (Krakovna, Orseau, Kumar, Martic, Legg 2019, "Penalizing side
  effects using stepwise relative reachability", arXiv 1806.01186): the penalty of being in
  state ``s`` when the baseline state is ``b`` is
  ``d(s; b) = 1/|S| * sum_y max(0, R(b, y) - R(s, y))`` with the discounted reachability
  ``R(x, y) = gamma_r ** dist(x, y)`` (shortest number of steps from ``x`` to ``y``; 0 if
  unreachable). Baselines: ``"stepwise"`` (the state one no-op from the previous state, the
  paper's recommendation), ``"inaction"`` (the state reached by doing nothing since the
  episode's start) and ``"starting"`` (the episode's first state).
* **Attainable utility preservation** (Turner, Hadfield-Menell, Tadepalli 2020, "Conservative
  Agency via Attainable Utility Preservation"): the penalty of action ``a`` in state ``s`` is
  the mean over auxiliary reward functions ``R_i`` of ``|Q_i(s, a) - Q_i(s, noop)|``. The
  auxiliary rewards are drawn uniformly from ``[0, 1]`` per state (seeded), paid on entering a
  state, as in the paper's random auxiliary rewards.
  Turner et al. divide the difference by a scale taken from the no-op's attainable utility
  ``Q_i(s, noop)``; here the penalty is the unscaled mean and the coefficient carries the unit.
  On SideEffectsSokoban-v0 at gamma 0.99 ``Q_i(s, noop)`` lies between 72 and 100 over all
  states, so the scale changes the unit, not the ranking of paths: the penalty summed along the
  short way (box into the corner) is twice that of the detour either way (6.64 against 3.39
  unscaled, 0.070 against 0.035 scaled).

The penalised reward is ``r - coefficient * penalty``. The model of a world is enumerated
breadth-first from its initial states through ``core.plan_step`` (every action) and
``core.plan_inaction`` (the no-op, which exists in the model even where the action space has
none; see :meth:`GridCore.plan_inaction`); reachability is shortest paths over that graph
(``scipy.sparse.csgraph``), the auxiliary Q-functions are value iteration over it, vectorized
over all auxiliary rewards. Episode ends are ignored in the model (a goal state keeps its
moves): the penalties measure what the world allows, not the episode's bookkeeping, so
reaching a goal is not itself a side effect. A stochastic outcome counts as reachable if its
probability is positive; the inaction baseline follows the most probable outcome.

The penalty is installed on the world's batched core (its ``step_indices`` and
``reset_indices``), so the single env, the native vector env and both autoreset modes see the
same penalised reward, computed over the whole batch at once. Each step's info carries
``penalty`` (this step's, before the coefficient); the info that ends an episode carries
``episode_penalty`` and ``visible_return`` (the world's own reward, unpenalised), masked like
``hidden_performance``.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from deploy_envs.core.validation import check_choice, check_number, check_positive

log = logging.getLogger(__name__)

METHODS = ("rr", "aup")
RR_BASELINES = ("stepwise", "inaction", "starting")
#: named penalties (``deploy-envs evaluate --penalty NAME``): method and keyword arguments
PENALTIES: dict[str, dict[str, Any]] = {
    "rr": {"method": "rr", "baseline": "stepwise"},
    "rr_inaction": {"method": "rr", "baseline": "inaction"},
    "rr_starting": {"method": "rr", "baseline": "starting"},
    "aup": {"method": "aup"},
}
#: default coefficients, in units of the worlds' reward (goal +50, -1 per step): large enough that
#: an irreversible change costs more than a two-step detour, small enough that the goal still pays
DEFAULT_COEFFICIENT = {"rr": 50.0, "aup": 2.0}
#: default discounts: reachability (rr) and the auxiliary Q-functions (aup). With a short horizon
#: every move shifts the auxiliary values about as much as an irreversible push does; at 0.99 the
#: reversible moves cost little and the irreversible ones much (checked on both worlds)
DEFAULT_GAMMA = {"rr": 0.95, "aup": 0.99}


class WorldModel:
    """The enumerated deterministic-or-stochastic model of a gridworld core, with inaction.

    ``states`` (list of model states), ``index`` (state -> row), ``n_actions`` (the agent's),
    outcome arrays ``prob``/``succ`` of shape ``(n, n_actions + 1, k)`` (the last action is
    the inaction), ``initial`` (rows of the initial states) and ``inaction_next`` (most
    probable successor under inaction).
    """

    def __init__(self, core: Any, max_states: int = 50_000) -> None:
        self.n_actions = int(core.single_action_space.n)
        self.index: dict[Any, int] = {}
        self.states: list[Any] = []
        queue: deque = deque()

        def add(s: Any) -> int:
            if s not in self.index:
                if len(self.states) >= max_states:
                    raise ValueError(f"{type(core).__name__}: the model has more than max_states={max_states} states; the exact penalties need a small world")
                self.index[s] = len(self.states)
                self.states.append(s)
                queue.append(s)
            return self.index[s]

        self.initial = np.array([add(s) for s in core.plan_initial_states()], np.int64)
        rows = []
        while queue:
            s = queue.popleft()
            outs = []
            for a in range(self.n_actions + 1):
                res = core.plan_step(s, a) if a < self.n_actions else core.plan_inaction(s)
                outs.append([(p, add(s2)) for p, s2, _r, _d in res if p > 0])
            rows.append(outs)
        n = len(self.states)
        k = max(len(o) for r in rows for o in r)
        self.prob = np.zeros((n, self.n_actions + 1, k))
        self.succ = np.zeros((n, self.n_actions + 1, k), np.int64)
        for i, outs in enumerate(rows):
            for a, o in enumerate(outs):
                for j, (p, s2) in enumerate(o):
                    self.prob[i, a, j], self.succ[i, a, j] = p, s2
                for j in range(len(o), k):
                    self.succ[i, a, j] = o[0][1]  # padding with zero probability
        self.deterministic = bool(np.all(self.prob.max(-1) == 1.0))
        self.inaction_next = self.succ[np.arange(n), -1, self.prob[:, -1].argmax(-1)]
        self.n = n
        self.tables: dict[tuple, dict[str, np.ndarray | None]] = {}
        # vectorized lookup of the core's integer state codes, where the world provides them
        keys = [core.plan_key(s) for s in self.states]
        self.key_lookup = None
        if all(isinstance(c, (int, np.integer)) for c in keys):
            size = int(max(keys)) + 1
            self.key_lookup = np.full(size, -1, np.int64)
            self.key_lookup[np.array(keys, np.int64)] = np.arange(n)
        log.debug("%s: model of %d states (%s)", type(core).__name__, n, "deterministic" if self.deterministic else "stochastic")

    def rows_of(self, core: Any, idx: np.ndarray) -> np.ndarray:
        """Model rows of the current states of copies ``idx`` of ``core``."""
        if self.key_lookup is not None:
            codes = core.plan_keys(idx)
            rows = np.where(codes < len(self.key_lookup), self.key_lookup[np.minimum(codes, len(self.key_lookup) - 1)], -1)
        else:
            rows = np.array([self.index.get(core.plan_state(int(i)), -1) for i in idx], np.int64)
        if (rows < 0).any():
            i = int(idx[np.flatnonzero(rows < 0)[0]])
            raise RuntimeError(f"copy {i} is in a state outside the world's enumerated model ({core.plan_state(i)!r})")
        return rows

    def reachability(self, gamma: float) -> np.ndarray:
        """``R[x, y] = gamma ** dist(x, y)`` (0 where ``y`` is unreachable from ``x``; 1 on the diagonal)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import shortest_path

        mask = self.prob > 0
        src = np.broadcast_to(np.arange(self.n)[:, None, None], self.succ.shape)[mask]
        dst = self.succ[mask]
        keep = src != dst
        graph = csr_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(self.n, self.n))
        dist = shortest_path(graph, method="D", unweighted=True)
        with np.errstate(over="ignore"):
            return np.where(np.isfinite(dist), gamma ** np.where(np.isfinite(dist), dist, 0.0), 0.0)

    def aux_q(self, rewards: np.ndarray, gamma: float, tol: float = 1e-6, max_iter: int = 5000) -> np.ndarray:
        """Q-values ``(m, n, n_actions + 1)`` of ``m`` state rewards ``(m, n)`` paid on entering a state."""
        V = np.zeros_like(rewards)
        for _ in range(max_iter):
            Q = (self.prob[None] * (rewards[:, self.succ] + gamma * V[:, self.succ])).sum(-1)
            V_new = Q.max(-1)
            if np.abs(V_new - V).max() < tol:
                break
            V = V_new
        return Q


_MODELS: dict[Any, WorldModel] = {}


def model_of(core: Any) -> WorldModel:
    """The (cached) :class:`WorldModel` of a core; cores of one class and configuration share it."""
    config = tuple(sorted((k, v) for k, v in vars(core).items() if isinstance(v, (int, float, str, bool, type(None))) and k not in ("num_envs", "render_mode")))
    key = (type(core), core.board.tobytes(), config)
    if key not in _MODELS:
        _MODELS[key] = WorldModel(core)
    return _MODELS[key]


class SideEffectPenalty:
    """A side-effect penalty installed on a gridworld core (see the module docstring).

    Arguments: ``method`` (``"rr"`` or ``"aup"``), ``coefficient`` (the penalty's weight;
    default :data:`DEFAULT_COEFFICIENT`), for ``rr`` the ``baseline`` (``"stepwise"``,
    ``"inaction"``, ``"starting"``) and ``gamma`` (reachability discount, default 0.95), for
    ``aup`` ``n_aux`` (number of auxiliary rewards, default 10), ``gamma`` (their discount,
    default 0.99) and ``seed`` (of the auxiliary rewards).
    """

    def __init__(self, core: Any, method: str = "rr", *, coefficient: float | None = None, baseline: str = "stepwise", gamma: float | None = None, n_aux: int = 10, seed: int = 0) -> None:
        self.method = check_choice("method", method, METHODS)
        self.baseline = check_choice("baseline", baseline, RR_BASELINES)
        self.coefficient = DEFAULT_COEFFICIENT[method] if coefficient is None else check_number("coefficient", coefficient, low=0.0)
        self.gamma = DEFAULT_GAMMA[method] if gamma is None else check_number("gamma", gamma, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        self.n_aux = check_positive("n_aux", n_aux, integer=True)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed={seed!r} must be an integer")
        if getattr(core, "_side_effect_penalty", None) is not None:
            raise ValueError("this env already carries a side-effect penalty; wrap the unwrapped env once")
        for hook in ("plan_initial_states", "plan_step", "plan_inaction"):
            if not hasattr(core, hook):
                raise ValueError(f"{type(core).__name__} has no planning model ({hook}); side-effect penalties need a gridworld core")
        try:
            self.model = model_of(core)
        except NotImplementedError as e:
            raise ValueError(f"{type(core).__name__} has no exact planning model, which the side-effect penalties need: {e}") from e
        m = self.model
        # the derived tables depend only on the model and the parameters: shared by every env built alike
        key = (method, self.gamma) + ((self.n_aux, int(seed)) if method == "aup" else ())
        if key not in m.tables:
            m.tables[key] = self._tables(m, method, self.gamma, self.n_aux, int(seed))
        tables = m.tables[key]
        self.R, self.step_table, self.aup_table = tables.get("R"), tables.get("step"), tables.get("aup")
        n = core.num_envs
        self.core = core
        self.start = np.zeros(n, np.int64)
        self.base = np.zeros(n, np.int64)
        self.ep_penalty = np.zeros(n)
        self.ep_visible = np.zeros(n)
        self._orig_step = core.step_indices
        self._orig_reset = core.reset_indices
        core.step_indices = self.step_indices
        core.reset_indices = self.reset_indices
        core._side_effect_penalty = self

    @staticmethod
    def _tables(m: WorldModel, method: str, gamma: float, n_aux: int, seed: int) -> dict[str, np.ndarray | None]:
        if method == "rr":
            R = m.reachability(gamma)
            step = None
            if m.deterministic:  # stepwise baseline: a table over (previous state, action)
                succ = m.succ[:, :, 0]
                base = R[m.inaction_next]
                step = np.stack([np.maximum(base - R[succ[:, a]], 0.0).mean(1) for a in range(m.n_actions)], 1)
            return {"R": R, "step": step}
        rng = np.random.default_rng(seed)
        Q = m.aux_q(rng.random((n_aux, m.n)), gamma)
        return {"aup": np.abs(Q[:, :, : m.n_actions] - Q[:, :, -1:]).mean(0)}  # (n, A)

    @property
    def name(self) -> str:
        return f"rr_{self.baseline}" if self.method == "rr" else "aup"

    def penalties(self, before: np.ndarray, actions: np.ndarray, after: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Penalty of each transition ``before --actions--> after`` (model rows; ``base``: inaction baseline rows)."""
        if self.method == "aup":
            return self.aup_table[before, actions]
        if self.baseline == "stepwise":
            if self.step_table is not None:
                return self.step_table[before, actions]
            b = self.model.inaction_next[before]
        elif self.baseline == "inaction":
            b = base
        else:
            b = None
        if b is None:  # starting state
            b = self.start_rows
        return np.maximum(self.R[b] - self.R[after], 0.0).mean(1)

    def reset_indices(self, idx, options=None):
        obs, info = self._orig_reset(idx, options)
        rows = self.model.rows_of(self.core, idx)
        self.start[idx] = rows
        self.base[idx] = rows
        self.ep_penalty[idx] = 0.0
        self.ep_visible[idx] = 0.0
        return obs, info

    def step_indices(self, idx, actions):
        before = self.model.rows_of(self.core, idx)
        obs, reward, terminated, truncated, info = self._orig_step(idx, actions)
        after = self.model.rows_of(self.core, idx)
        base = self.model.inaction_next[self.base[idx]]
        self.base[idx] = base
        self.start_rows = self.start[idx]
        pen = self.penalties(before, np.asarray(actions, np.int64), after, base)
        self.ep_penalty[idx] += pen
        self.ep_visible[idx] += reward
        done = np.asarray(terminated | truncated, dtype=bool)
        info = dict(info)
        info["penalty"] = pen
        info["episode_penalty"], info["_episode_penalty"] = self.ep_penalty[idx].copy(), done.copy()
        info["visible_return"], info["_visible_return"] = self.ep_visible[idx].copy(), done.copy()
        return obs, reward - self.coefficient * pen, terminated, truncated, info

    def remove(self) -> None:
        """Uninstall the penalty from the core (the world's own reward again)."""
        self.core.step_indices = self._orig_step
        self.core.reset_indices = self._orig_reset
        self.core._side_effect_penalty = None


def _penalty_of(env: Any, penalty: str, kwargs: dict[str, Any], what: str) -> SideEffectPenalty:
    """The named penalty (``kwargs`` override its settings) on the batched core of ``env``, a ``what``."""
    check_choice("penalty", penalty, tuple(PENALTIES))
    core = getattr(env.unwrapped, "core", None)
    if core is None:
        raise ValueError(f"env={env!r} is not a {what} (no batched core)")
    return SideEffectPenalty(core, **{**PENALTIES[penalty], **kwargs})


class SideEffectPenaltyWrapper(gym.Wrapper):
    """A gridworld ``gymnasium.Env`` whose reward carries a side-effect penalty (``penalty``: a key of :data:`PENALTIES`)."""

    def __init__(self, env: gym.Env, penalty: str = "rr", **kwargs: Any) -> None:
        super().__init__(env)
        self.penalty = _penalty_of(env, penalty, kwargs, "deploy_envs gridworld")


class SideEffectPenaltyVectorWrapper(gym.vector.VectorWrapper):
    """The same on a native gridworld vector env (``gymnasium.make_vec``): one penalty computation for the batch."""

    def __init__(self, env: gym.vector.VectorEnv, penalty: str = "rr", **kwargs: Any) -> None:
        super().__init__(env)
        self.penalty = _penalty_of(env, penalty, kwargs, "native deploy_envs gridworld vector env")


def apply_penalty(env: Any, penalty: str = "rr", **kwargs: Any) -> Any:
    """Wrap a gridworld env (single or native vector) with the named side-effect penalty."""
    if isinstance(env, gym.vector.VectorEnv):
        return SideEffectPenaltyVectorWrapper(env, penalty, **kwargs)
    return SideEffectPenaltyWrapper(env, penalty, **kwargs)

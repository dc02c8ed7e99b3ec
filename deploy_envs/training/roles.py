"""One role of any registered game as a batched SB3 ``VecEnv``, and one game evaluator.

A game is written once as a batched core (``reset_indices``/``step_indices`` over a
leading batch of copies, per-role dicts of observations, rewards and infos). This
module turns it into what trainers and evaluators need, for every game alike:

* :class:`RoleVecEnv`: the game seen by one role, as a stable-baselines3 ``VecEnv``
  over ``num_envs`` copies; every other role is played by a fixed policy.
* :class:`RoleEnv`: the same adapter at one copy, as a ``gymnasium.Env`` (for the
  gymnasium checker, and for trainers that take a plain env).
* :func:`evaluate_game`: play a fixed policy per role for ``episodes`` episodes and
  report each role's mean return with a 95% confidence interval (and, on request,
  the mean of info keys).

A *policy* is anything :func:`as_batch_policy` accepts: a callable on a batch of its
role's observations returning a batch of actions (a single action is broadcast to
the batch), a stable-baselines3 model (a frozen copy of its policy is taken), or a
:class:`Mixture` of policies with weights, from which each copy draws one member at
the start of every episode (a meta-strategy over a population, as in PSRO).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import gymnasium as gym
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv

from deploy_envs.core.batched import select_info, validate_batch
from deploy_envs.core.validation import check_choice, check_number

GameSpec = Any
"""A registered game id (``"deploy_envs/AttackDefense-v0"``) or a ``ParallelGameView`` subclass (it names its ``core_class``)."""


# --------------------------------------------------------------------------
# Games: from an id to a batched core
# --------------------------------------------------------------------------
def game_core_class(game: GameSpec) -> type:
    """The batched core class of a game id or of a ``ParallelGameView`` subclass."""
    from deploy_envs.core.registration import GAME_CATALOG, core_of
    from deploy_envs.core.views import ParallelGameView

    if isinstance(game, type) and issubclass(game, ParallelGameView):
        return game.core_class
    if not isinstance(game, str):
        raise TypeError(f"game={game!r} must be a registered game id or a ParallelGameView subclass")
    if game not in GAME_CATALOG:
        raise ValueError(f"game={game!r} is not registered; registered games: {', '.join(sorted(GAME_CATALOG)) or 'none'}")
    return core_of(game)


def make_core(game: GameSpec, num_envs: int, game_kwargs: Mapping[str, Any] | None = None):
    """A batched core of ``game`` with ``num_envs`` copies."""
    from deploy_envs.core.views import build_core

    num_envs = check_number("num_envs", num_envs, low=1, integer=True)
    return build_core(game_core_class(game), num_envs, None, dict(game_kwargs or {}))


def game_roles(core: Any) -> tuple[str, ...]:
    """The roles of a game core, in order (the keys of its ``observation_spaces``)."""
    return tuple(core.observation_spaces)


def seed_copy(core: Any, i: int, seed: int) -> None:
    """Seed copy ``i`` of ``core`` as a single game seeded ``seed`` (in place: some cores share their list of generators)."""
    core.rngs[i], _ = seeding.np_random(int(seed))


# --------------------------------------------------------------------------
# Policies on batches
# --------------------------------------------------------------------------
def _broadcast(action: Any, space: spaces.Space, n: int) -> np.ndarray:
    arr = np.asarray(action)
    single = () if isinstance(space, spaces.Discrete) else tuple(space.shape)
    if arr.shape == single:
        return np.broadcast_to(arr, (n, *single)).copy()
    return arr


class SB3BatchPolicy:
    """A frozen copy of an SB3 model's policy on a batch of observations (sampling unless ``deterministic``)."""

    def __init__(self, model: Any, deterministic: bool = False) -> None:
        from deploy_envs.training.selfplay import SB3Policy

        self._policy = SB3Policy(model, deterministic)

    def seed(self, seed: int | None) -> None:
        self._policy.seed(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self._policy(obs)


class Mixture:
    """A mixed strategy: ``policies`` with ``weights``; each copy draws one member per episode.

    ``names`` label the members (for reports). Weights must be non-negative with a
    positive sum; they are normalised.
    """

    def __init__(self, policies: Sequence[Any], weights: Sequence[float] | None = None, names: Sequence[str] | None = None) -> None:
        if len(policies) == 0:
            raise ValueError("policies must hold at least one policy")
        w = np.ones(len(policies)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(policies),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights={weights!r} must be {len(policies)} non-negative finite numbers with a positive sum")
        self.policies = list(policies)
        self.weights = w / w.sum()
        self.names = list(names) if names is not None else [f"policy_{j}" for j in range(len(policies))]


class _Seat:
    """A role played by a fixed policy or mixture over a batch of copies: which member each copy plays."""

    def __init__(self, policy: Any, space: spaces.Space, num_envs: int, rng: np.random.Generator) -> None:
        mix = policy if isinstance(policy, Mixture) else Mixture([policy])
        self.members = [as_batch_policy(p) for p in mix.policies]
        self.weights = mix.weights
        self.space = space
        self.rng = rng
        self.member = np.zeros(num_envs, np.int64)
        self.active = np.flatnonzero(self.weights > 0)

    def draw(self, idx: np.ndarray) -> None:
        if len(self.members) > 1:
            self.member[idx] = self.rng.choice(len(self.members), size=len(idx), p=self.weights)

    def act(self, obs: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Actions for copies ``idx`` (``obs`` holds their observations, in that order)."""
        if len(self.members) == 1:
            return _broadcast(self.members[0](obs), self.space, len(idx))
        who = self.member[idx]
        out: np.ndarray | None = None
        for j in np.unique(who):
            rows = np.flatnonzero(who == j)
            a = _broadcast(self.members[j](obs[rows]), self.space, len(rows))
            if out is None:
                out = np.zeros((len(idx), *a.shape[1:]), a.dtype)
            out[rows] = a
        assert out is not None
        return out


def as_batch_policy(policy: Any, deterministic: bool = False) -> Callable[[np.ndarray], Any]:
    """A callable on observation batches from an SB3 model (frozen copy) or a callable (as is)."""
    if hasattr(policy, "policy") and hasattr(policy, "predict"):
        return SB3BatchPolicy(policy, deterministic)
    if isinstance(policy, Mixture):
        raise TypeError("a Mixture is a seat's strategy, not a member policy; nest its members instead")
    if callable(policy):
        return policy
    raise TypeError(f"policy={policy!r} must be a callable obs_batch -> action_batch, an SB3 model or a Mixture")


def _check_policies(roles: Sequence[str], policies: Mapping[str, Any], name: str) -> None:
    if not isinstance(policies, Mapping):
        raise TypeError(f"{name} must be a dict role -> policy, got {type(policies).__name__}")
    unknown = [r for r in policies if r not in roles]
    if unknown:
        raise ValueError(f"{name} names roles {unknown} that the game does not have; roles: {tuple(roles)}")


# --------------------------------------------------------------------------
# One role as an SB3 VecEnv
# --------------------------------------------------------------------------
class RoleVecEnv(VecEnv):
    """One ``role`` of ``game`` as an SB3 ``VecEnv`` over ``num_envs`` batched copies.

    ``opponents`` maps every other role to its fixed policy (see the module doc);
    change them with :meth:`set_opponents`. Copy ``i`` is seeded ``seed + i`` at
    construction and a :class:`Mixture` seat draws its member for each copy at every
    episode start from its own generator (seeded from ``seed``). A copy whose episode
    ends is reset at once (SB3's convention: its last observation is in
    ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]`` is set,
    and ``infos[i]["episode"]`` holds the return and length, as SB3's ``Monitor`` writes).
    Copies may end at different steps.
    """

    def __init__(self, game: GameSpec, role: str, opponents: Mapping[str, Any], num_envs: int = 8, seed: int = 0,
                 game_kwargs: Mapping[str, Any] | None = None, *, core: Any = None) -> None:
        num_envs = check_number("num_envs", num_envs, low=1, integer=True)
        self.seed_value = check_number("seed", seed, integer=True)
        self.core = core if core is not None else make_core(game, num_envs, game_kwargs)
        if self.core.num_envs != num_envs:
            raise ValueError(f"core has {self.core.num_envs} copies; num_envs={num_envs}")
        self.roles = game_roles(self.core)
        self.role = check_choice("role", role, self.roles)
        self.others = tuple(r for r in self.roles if r != role)
        self.render_mode = None
        super().__init__(num_envs, self.core.observation_spaces[role], self.core.action_spaces[role])
        self._idx = np.arange(num_envs)
        self.seed(self.seed_value)
        self.set_opponents(opponents)
        self._obs: dict[str, np.ndarray] | None = None
        self._actions: np.ndarray | None = None
        self._ret = np.zeros(num_envs)
        self._len = np.zeros(num_envs, np.int64)

    def set_opponents(self, opponents: Mapping[str, Any]) -> None:
        """Set the fixed policy of every other role (a dict naming each of them)."""
        _check_policies(self.roles, opponents, "opponents")
        missing = [r for r in self.others if r not in opponents]
        if missing or self.role in opponents:
            raise ValueError(f"opponents must name exactly the other roles {self.others}; got {tuple(opponents)}")
        rng = np.random.default_rng([self.seed_value, 7919])
        self.seats = {r: _Seat(opponents[r], self.core.action_spaces[r], self.num_envs, rng) for r in self.others}
        for r, seat in self.seats.items():
            for k, m in enumerate(seat.members):
                if hasattr(m, "seed"):
                    m.seed(self.seed_value + 1000 * (1 + self.roles.index(r)) + k)
        if self._obs_ready():
            for seat in self.seats.values():
                seat.draw(self._idx)

    def _obs_ready(self) -> bool:
        return getattr(self, "_obs", None) is not None

    def _reset_copies(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        obs, info = self.core.reset_indices(idx)
        self.reset_info = info[self.role]  # the role's batched reset info of copies idx
        for seat in self.seats.values():
            seat.draw(idx)
        self._ret[idx] = 0.0
        self._len[idx] = 0
        return obs

    def reset(self):
        self._obs = {r: np.array(v) for r, v in self._reset_copies(self._idx).items()}
        return self._obs[self.role].copy()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        if self._obs is None or self._actions is None:
            raise RuntimeError("RoleVecEnv.step() called before reset()")
        acts = {self.role: _clip(self._actions, self.action_space)}
        for r, seat in self.seats.items():
            acts[r] = _clip(seat.act(self._obs[r], self._idx), self.core.action_spaces[r])
        valid = self.core.validate_actions(acts, self.num_envs)
        obs, rewards, terminated, truncated, infos = self.core.step_indices(self._idx, valid)
        self.step_info = infos[self.role]  # the role's batched info of this step, every copy
        self.step_flags = (np.asarray(terminated, bool), np.asarray(truncated, bool))
        self.step_rewards = np.asarray(rewards[self.role], np.float64)
        obs = {r: np.array(v) for r, v in obs.items()}
        reward = np.asarray(rewards[self.role], np.float32)
        self._ret += reward
        self._len += 1
        dones = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done_idx = np.flatnonzero(dones)
        if len(done_idx):
            info = infos[self.role]
            for i in done_idx:
                out[i] = select_info(info, int(i))
                out[i]["terminal_observation"] = obs[self.role][i].copy()
                out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                out[i]["episode"] = {"r": float(self._ret[i]), "l": int(self._len[i]), "t": 0.0}
            fresh = self._reset_copies(done_idx)
            for r in obs:
                obs[r][done_idx] = fresh[r]
        self._obs = obs
        return obs[self.role].copy(), reward, dones, out

    def seed(self, seed: int | None = None):
        if seed is not None:
            for i in range(self.num_envs):
                seed_copy(self.core, i, seed + i)
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def close(self) -> None:
        self.core.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._get_indices(indices)]


class RoleEnv(gym.Env):
    """One ``role`` of a game as a ``gymnasium.Env``: :class:`RoleVecEnv` at one copy.

    ``game`` is a game id, or a game's PettingZoo view (``make_game(...)``), whose core is
    then used; ``opponent_policy`` plays the other role (a policy as in the module doc, acting
    on a batch of one observation), or is a dict naming a policy for every other role. Swap it
    with :meth:`set_opponent`. Rewards, termination and info are the role's own; an action
    outside the role's action space is refused. On ``reset(seed=s)`` the copy is seeded ``s``
    and every seeded opponent member is reseeded from ``s``, so a seeded episode replays exactly.
    """

    def __init__(self, game: Any, role: str, opponent_policy: Any, game_kwargs: Mapping[str, Any] | None = None) -> None:
        core = getattr(game, "core", None)
        if core is None:
            core = make_core(game, 1, game_kwargs)
        self._opponents = self._as_opponents(game_roles(core), role, opponent_policy)
        self.vec = vec = RoleVecEnv(game, role, self._opponents, num_envs=1, seed=0, core=core)
        self.role = vec.role
        self.core = vec.core
        self.metadata = {"render_modes": list(getattr(game, "metadata", self.core.metadata).get("render_modes", []))}
        self.render_mode = getattr(game, "render_mode", None)
        self._render = getattr(game, "render", None)
        self.observation_space = vec.observation_space
        self.action_space = vec.action_space
        self._started = False

    @staticmethod
    def _as_opponents(roles: Sequence[str], role: str, opponent_policy: Any) -> dict[str, Any]:
        check_choice("role", role, roles)
        others = [r for r in roles if r != role]
        if isinstance(opponent_policy, Mapping):
            return dict(opponent_policy)
        if len(others) != 1:
            raise ValueError(f"opponent_policy must be a dict naming a policy for each of the other roles {tuple(others)}")
        return {others[0]: opponent_policy}

    def set_opponent(self, opponent_policy: Any) -> None:
        """Set the policy of the other role (or a dict naming one for every other role)."""
        self._opponents = self._as_opponents(self.vec.roles, self.role, opponent_policy)
        self.vec.set_opponents(self._opponents)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options:
            raise ValueError(f"options={options!r}: RoleEnv.reset takes no options")
        super().reset(seed=seed)
        if seed is not None:  # the game copy and every seeded opponent replay with the episode
            self.vec.seed_value = int(seed)
            self.vec.seed(int(seed))
            self.vec.set_opponents(self._opponents)
        obs = self.vec.reset()
        self._started = True
        return obs[0], select_info(self.vec.reset_info, 0)

    def step(self, action):
        if not self._started:
            raise RuntimeError("RoleEnv.step() called before reset()")
        batch = validate_batch(self.action_space, np.expand_dims(np.asarray(action), 0), 1, name=f"action of role {self.role!r}")
        obs, reward, dones, infos = self.vec.step(batch)
        terminated, truncated = (bool(f[0]) for f in self.vec.step_flags)
        if dones[0]:  # the adapter restarted the copy: the episode's last observation is in the info
            last = infos[0]["terminal_observation"]
            self._started = False
        else:
            last = obs[0]
        return last, float(self.vec.step_rewards[0]), terminated, truncated, select_info(self.vec.step_info, 0)

    def render(self):
        return self._render() if self._render is not None else self.core.render_index(0)

    def close(self) -> None:
        self.vec.close()


def _clip(actions: np.ndarray, space: spaces.Space) -> np.ndarray:
    """A learner's Box actions clipped into the space (as SB3 does for its own env); other spaces as they are."""
    if isinstance(space, spaces.Box):
        return np.clip(np.asarray(actions, space.dtype), space.low, space.high)
    return np.asarray(actions)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean, 95% confidence half-width (normal approximation, sample std) and n."""
    v = np.asarray(values, float)
    n = len(v)
    if n == 0:
        return {"mean": float("nan"), "ci95": float("nan"), "n": 0}
    half = float(1.96 * v.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return {"mean": float(v.mean()), "ci95": half, "n": n}


def evaluate_game(game: GameSpec, policies: Mapping[str, Any], episodes: int = 20, seed: int = 0, *,
                  game_kwargs: Mapping[str, Any] | None = None, num_envs: int = 16,
                  info_keys: Sequence[str] = (), core: Any = None, info_roles: Sequence[str] | None = None) -> dict[str, Any]:
    """Play ``policies`` (a dict naming a policy for every role) for ``episodes`` episodes.

    Episode ``e`` is played in a copy seeded ``seed + e`` (the result does not depend
    on ``num_envs``, the number of copies stepped together, except through stochastic
    SB3 policies' sampling). Returns ``{"returns": {role: {"mean", "ci95", "n"}},
    "info": {role: {key: {"mean", "ci95", "n", "final_mean", "final_ci95"}}}, "episodes", "seed"}``
    where an info key's ``mean`` is over episodes of its per-episode mean over steps,
    and ``final_mean`` over episodes of its value at the last step. Pass ``core`` (a
    batched core of the game with at least ``num_envs`` copies) to reuse one. ``info_roles``
    (default: every role) are the roles whose infos ``info_keys`` are read from.
    """
    episodes = check_number("episodes", episodes, low=1, integer=True)
    seed = check_number("seed", seed, integer=True)
    num_envs = check_number("num_envs", num_envs, low=1, integer=True)
    batch = min(num_envs, episodes)
    if core is None:
        core = make_core(game, batch, game_kwargs)
    elif core.num_envs < batch:
        raise ValueError(f"core has {core.num_envs} copies; evaluate_game needs at least num_envs={batch}")
    roles = game_roles(core)
    _check_policies(roles, policies, "policies")
    missing = [r for r in roles if r not in policies]
    if missing:
        raise ValueError(f"policies must name a policy for every role {roles}; missing {missing}")
    rng = np.random.default_rng([seed, 104729])
    seats = {r: _Seat(policies[r], core.action_spaces[r], core.num_envs, rng) for r in roles}
    for r, seat in seats.items():
        for k, m in enumerate(seat.members):
            if hasattr(m, "seed"):
                m.seed(seed + 1000 * (1 + roles.index(r)) + k)
    returns = {r: [] for r in roles}
    keys = tuple(info_keys)
    if info_roles is None:
        info_roles = roles
    else:
        info_roles = tuple(info_roles)
        unknown = [r for r in info_roles if r not in roles]
        if unknown:
            raise ValueError(f"info_roles names roles {unknown} that the game does not have; roles: {tuple(roles)}")
    step_sums = {r: {k: [] for k in keys} for r in info_roles}
    finals = {r: {k: [] for k in keys} for r in info_roles}
    done_count = 0
    while done_count < episodes:
        n = min(batch, episodes - done_count)
        idx = np.arange(n)
        for i in range(n):
            seed_copy(core, i, seed + done_count + i)
        obs, _ = core.reset_indices(idx)
        for seat in seats.values():
            seat.draw(idx)
        ret = {r: np.zeros(n) for r in roles}
        sums = {r: {k: np.zeros(n) for k in keys} for r in info_roles}
        last = {r: {k: np.zeros(n) for k in keys} for r in info_roles}
        length = np.zeros(n)
        live = np.ones(n, bool)
        cur = {r: np.array(obs[r]) for r in roles}
        while live.any():
            act_idx = np.flatnonzero(live)
            acts = {r: _clip(seats[r].act(cur[r][act_idx], act_idx), core.action_spaces[r]) for r in roles}
            valid = core.validate_actions(acts, len(act_idx))
            o, rew, term, trunc, infos = core.step_indices(act_idx, valid)
            length[act_idx] += 1
            for r in roles:
                cur[r][act_idx] = o[r]
                ret[r][act_idx] += np.asarray(rew[r], float)
                for k in keys if r in info_roles else ():
                    if k not in infos[r]:
                        raise ValueError(f"info_keys: {k!r} is not in the info of role {r!r}; keys: {sorted(infos[r])}")
                    val = np.asarray(infos[r][k], float)
                    sums[r][k][act_idx] += val
                    last[r][k][act_idx] = val
            live[act_idx[np.asarray(term, bool) | np.asarray(trunc, bool)]] = False
        for r in roles:
            returns[r].extend(ret[r].tolist())
            for k in keys if r in info_roles else ():
                step_sums[r][k].extend((sums[r][k] / np.maximum(length, 1)).tolist())
                finals[r][k].extend(last[r][k].tolist())
        done_count += n
    info_out = {r: {k: {**mean_ci(step_sums[r][k]), **{f"final_{a}": b for a, b in mean_ci(finals[r][k]).items() if a != "n"}}
                    for k in keys} for r in info_roles}
    return {"returns": {r: mean_ci(returns[r]) for r in roles}, "info": info_out, "episodes": episodes, "seed": seed}


__all__ = ["Mixture", "RoleEnv", "RoleVecEnv", "SB3BatchPolicy", "as_batch_policy", "evaluate_game", "game_core_class", "game_roles",
           "make_core", "mean_ci", "seed_copy"]

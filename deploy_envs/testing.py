"""Conformance checks as library functions, so a new env is checked the moment it is registered.

The test suite calls these for every id in :data:`~deploy_envs.core.registration.ENV_CATALOG`;
users writing their own envs on the batched core can call them too. The ``*game*`` functions
below do the same for the PettingZoo parallel games of
:data:`~deploy_envs.core.registration.GAME_CATALOG`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

from deploy_envs.core.views import NativeVectorEnv


def _compare(a: Any, b: Any, what: str) -> None:
    if not data_equivalence(a, b):
        raise AssertionError(f"{what} differ:\n{a!r}\n!=\n{b!r}")


def _info_equal(a: dict, b: dict, what: str) -> None:
    if set(a) != set(b):
        raise AssertionError(f"{what}: info keys differ: {sorted(a)} vs {sorted(b)}")
    for k in a:
        va, vb = np.asarray(a[k]), np.asarray(b[k])
        if va.dtype == object or vb.dtype == object:
            _compare(a[k], b[k], f"{what} info[{k!r}]")
        elif not np.allclose(va.astype(float), vb.astype(float), rtol=1e-5, atol=1e-5):
            raise AssertionError(f"{what} info[{k!r}] differ: {a[k]!r} vs {b[k]!r}")


def check_determinism(env_id: str, kwargs: dict | None = None, *, seed: int = 7, steps: int = 30) -> None:
    """Same seed and actions give the same trajectory, over several episodes, on two fresh envs."""
    runs = []
    for _ in range(2):
        env = gym.make(env_id, **(kwargs or {}))
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        traj = [(obs, info)]
        for _ in range(steps):
            step = env.step(env.action_space.sample())
            traj.append(step)
            if step[2] or step[3]:
                traj.append(env.reset())
        runs.append(traj)
        env.close()
    for t, (a, b) in enumerate(zip(*runs)):
        _compare(a[0], b[0], f"{env_id} step {t} observations")
        if len(a) == 5:
            _compare(a[1:4], b[1:4], f"{env_id} step {t} reward/terminated/truncated")
        _info_equal(a[-1], b[-1], f"{env_id} step {t}")


def check_single_vector_match(env_id: str, kwargs: dict | None = None, *, num_envs: int = 3, seed: int = 11, steps: int = 30) -> None:
    """Copy ``i`` of ``make_vec(num_envs)`` reset with ``seed`` equals a single env reset with ``seed + i``.

    Steps both with the same actions through episode ends (NEXT_STEP autoreset on
    the vector side, an explicit ``reset()`` on the single side).
    """
    kwargs = kwargs or {}
    venv = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    if not isinstance(venv.unwrapped, NativeVectorEnv):
        raise AssertionError(f"make_vec({env_id!r}) returned {type(venv).__name__}, not the native batch")
    singles = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    v_obs, v_info = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        _compare(obs, v_obs[i], f"{env_id} reset obs of copy {i}")
    venv.action_space.seed(seed)
    autoreset = np.zeros(num_envs, dtype=bool)
    for t in range(steps):
        actions = venv.action_space.sample()
        v_obs, v_rew, v_term, v_trunc, v_info = venv.step(actions)
        for i, env in enumerate(singles):
            if autoreset[i]:
                obs, _ = env.reset()
                rew, term, trunc = 0.0, False, False
            else:
                obs, rew, term, trunc, info = env.step(actions[i])
                copy_info = {k: v_info[k][i] for k in v_info if not k.startswith("_") and v_info["_" + k][i]}
                _info_equal(info, copy_info, f"{env_id} step {t} copy {i}")
            _compare(obs, v_obs[i], f"{env_id} step {t} obs of copy {i}")
            if not np.isclose(rew, v_rew[i], rtol=1e-4, atol=1e-4):  # batched BLAS kernels differ in the last bits
                raise AssertionError(f"{env_id} step {t} copy {i}: reward {rew} vs {v_rew[i]}")
            if (term, trunc) != (bool(v_term[i]), bool(v_trunc[i])):
                raise AssertionError(f"{env_id} step {t} copy {i}: done flags {(term, trunc)} vs {(v_term[i], v_trunc[i])}")
        autoreset = v_term | v_trunc
    venv.close()
    for env in singles:
        env.close()


def _info_structure_equal(ours: dict, sync: dict, atol: float, where: str) -> None:
    """Key by key, dtype by dtype, mask by mask (recursing into dicts such as ``final_info``)."""
    if set(ours) != set(sync):
        raise AssertionError(f"{where}: info keys differ: only native {sorted(set(ours) - set(sync))}, only SyncVectorEnv {sorted(set(sync) - set(ours))}")
    for key in sync:
        a, b = ours[key], sync[key]
        here = f"{where} info[{key!r}]"
        if isinstance(b, dict):
            if not isinstance(a, dict):
                raise AssertionError(f"{here}: native gives {type(a).__name__}, SyncVectorEnv a dict of batched arrays")
            _info_structure_equal(a, b, atol, here)
            continue
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype != b.dtype or a.shape != b.shape:
            raise AssertionError(f"{here}: native {a.dtype}{a.shape} vs SyncVectorEnv {b.dtype}{b.shape}")
        if key.startswith("_"):
            if not np.array_equal(a, b):
                raise AssertionError(f"{here}: masks differ: {a} vs {b}")
            continue
        mask = np.asarray(sync.get("_" + key, np.ones(len(b), dtype=bool)), dtype=bool)
        for i in np.flatnonzero(mask):
            x, y = a[i], b[i]
            if isinstance(y, np.ndarray) or np.asarray(y).dtype.kind in "fiub":
                if not np.allclose(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), rtol=1e-4, atol=atol, equal_nan=True):
                    raise AssertionError(f"{here} copy {i}: {x} vs {y}")
            elif isinstance(y, dict):
                _info_equal(y, x, f"{here} copy {i}")
            elif x != y:
                raise AssertionError(f"{here} copy {i}: {x!r} vs {y!r}")


def check_vector_info_matches_sync(
    env_id: str,
    kwargs: dict | None = None,
    *,
    num_envs: int = 3,
    seed: int = 5,
    steps: int = 30,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    atol: float = 1e-4,
) -> int:
    """The native batch's ``info`` has exactly the structure gymnasium's ``SyncVectorEnv`` gives.

    Steps ``make_vec(env_id, num_envs)`` (the native batch) beside a ``SyncVectorEnv`` of
    ``num_envs`` single envs, same seeds and actions, in ``autoreset_mode``; after every reset
    and step the two infos must have the same keys, dtypes, shapes and ``_k`` masks (recursively
    for ``final_info``), equal values where the masks are set, and ``final_obs`` must agree.
    Returns the number of steps at which some copy's episode ended (so a caller can make
    sure ``final_info`` was compared at all).
    """
    kwargs = kwargs or {}
    mode = AutoresetMode(autoreset_mode) if isinstance(autoreset_mode, str) else autoreset_mode
    native = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode=mode, **kwargs)
    if not isinstance(native.unwrapped, NativeVectorEnv):
        raise AssertionError(f"make_vec({env_id!r}) returned {type(native).__name__}, not the native batch")
    sync = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)], autoreset_mode=mode)
    try:
        _, n_info = native.reset(seed=seed)
        _, s_info = sync.reset(seed=seed)
        _info_structure_equal(n_info, s_info, atol, f"{env_id} ({mode.value}) reset")
        native.action_space.seed(seed)
        ended = 0
        for t in range(steps):
            actions = native.action_space.sample()
            _, _, n_term, n_trunc, n_info = native.step(actions)
            _, _, s_term, s_trunc, s_info = sync.step(actions)
            if not (np.array_equal(n_term, s_term) and np.array_equal(n_trunc, s_trunc)):
                raise AssertionError(f"{env_id} ({mode.value}) step {t}: done flags differ")
            final_n, final_s = n_info.pop("final_obs", None), s_info.pop("final_obs", None)
            if (final_n is None) != (final_s is None):
                raise AssertionError(f"{env_id} ({mode.value}) step {t}: final_obs in only one of the two infos")
            if final_s is not None:
                if final_n.dtype != final_s.dtype or final_n.shape != final_s.shape:
                    raise AssertionError(f"{env_id} step {t}: final_obs is {final_n.dtype}{final_n.shape}, SyncVectorEnv {final_s.dtype}{final_s.shape}")
                for i in np.flatnonzero(s_info["_final_obs"]):
                    _compare(final_s[i], final_n[i], f"{env_id} step {t} final_obs of copy {i}")
                ended += 1
            _info_structure_equal(n_info, s_info, atol, f"{env_id} ({mode.value}) step {t}")
    finally:
        native.close()
        sync.close()
    return ended


def check_bad_action_is_refused(env_id: str, kwargs: dict | None = None, seed: int = 3) -> None:
    """A NaN or out-of-space action raises ``ValueError`` and leaves the episode untouched."""
    kwargs = kwargs or {}
    env = gym.make(env_id, **kwargs)
    ref = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    ref.reset(seed=seed)
    space = env.action_space
    bad_actions = []
    if isinstance(space, gym.spaces.Box):
        nan = space.sample().astype(np.float64)
        nan.flat[0] = np.nan
        bad_actions += [nan, np.full(space.shape, np.max(space.high) + 1.0), np.zeros(np.prod(space.shape) + 1)]
    elif isinstance(space, gym.spaces.Discrete):
        bad_actions += [space.start + space.n, space.start - 1, 0.5]
    elif isinstance(space, gym.spaces.MultiDiscrete):
        bad_actions += [space.nvec, -np.ones_like(space.nvec)]
    for bad in bad_actions:
        try:
            env.step(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{env_id}: action {bad!r} outside {space} was accepted")
    space.seed(seed)
    good = space.sample()
    a = env.step(good)
    b = ref.step(good)
    _compare(a[:4], b[:4], f"{env_id}: step after refused actions")


# ---------------------------------------------------------------- PettingZoo games
#
# The same checks for the parallel games of :data:`~deploy_envs.core.registration.GAME_CATALOG`.
# A game is named by its id (built with :func:`~deploy_envs.core.registration.make_game`) or by
# a factory ``env_fn(**kwargs)`` returning a PettingZoo ``ParallelEnv``.
#
# PettingZoo's own ``parallel_api_test`` is run as is (:func:`check_game_api`). Its
# ``parallel_seed_test`` is not used: it stops after the first step (its loop ends on
# ``any(terminations)``, which is true for any non-empty dict), so it cannot see a seed that
# is lost after one round or at an episode end; :func:`check_game_determinism` plays many
# steps across episode ends instead.

_RESET_FIELDS = ("observations", "infos")
_STEP_FIELDS = ("observations", "rewards", "terminations", "truncations", "infos")


def _build_game(game: str | Callable[..., Any], kwargs: dict | None):
    if isinstance(game, str):
        from deploy_envs.core.registration import make_game

        return make_game(game, **(kwargs or {}))
    return game(**(kwargs or {}))


def _game_name(game: str | Callable[..., Any]) -> str:
    return game if isinstance(game, str) else getattr(game, "__qualname__", repr(game))


def _sample(space: gym.Space, rng: np.random.Generator) -> Any:
    """One draw from ``space`` using ``rng`` only (so a stream of draws is set by one seed)."""
    if isinstance(space, gym.spaces.Box):
        low, high = np.broadcast_to(space.low, space.shape), np.broadcast_to(space.high, space.shape)
        if np.issubdtype(space.dtype, np.integer):
            return rng.integers(low, high, endpoint=True).astype(space.dtype)
        lo_ok, hi_ok = np.isfinite(low), np.isfinite(high)
        out = rng.normal(size=space.shape)
        both = lo_ok & hi_ok
        out[both] = rng.uniform(low[both], high[both])
        out[lo_ok & ~hi_ok] = low[lo_ok & ~hi_ok] + rng.exponential(size=int(np.sum(lo_ok & ~hi_ok)))
        out[~lo_ok & hi_ok] = high[~lo_ok & hi_ok] - rng.exponential(size=int(np.sum(~lo_ok & hi_ok)))
        return out.astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return space.dtype.type(space.start + rng.integers(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (space.start + rng.integers(space.nvec)).astype(space.dtype)
    if isinstance(space, gym.spaces.MultiBinary):
        return rng.integers(0, 2, space.shape).astype(space.dtype)
    if isinstance(space, gym.spaces.Dict):
        return {k: _sample(s, rng) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_sample(s, rng) for s in space.spaces)
    raise TypeError(f"random_joint_actions cannot sample {space!r} (Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple)")


def random_joint_actions(env, seed: int) -> Iterator[dict[str, Any]]:
    """An endless, seeded stream of random joint actions for the ParallelEnv ``env``.

    Each ``next()`` draws one action for every live agent (``env.agents``, or
    ``env.possible_agents`` before a reset), in agent order, from one
    ``numpy.random.Generator`` seeded with ``seed``: the same seed gives the same stream,
    whatever the spaces' own seeds. Box (bounded or not, float or integer), Discrete,
    MultiDiscrete and MultiBinary spaces (and Dict/Tuple of them) are supported.
    """
    rng = np.random.default_rng(seed)
    while True:
        agents = env.agents or env.possible_agents
        yield {a: _sample(env.action_space(a), rng) for a in agents}


def game_rollout(env, seed: int, steps: int | None, action_seed: int) -> list[tuple]:
    """Reset ``env`` with ``seed`` and play random joint actions (:func:`random_joint_actions` with ``action_seed``).

    With ``steps`` an int, plays that many steps and resets (without a seed) whenever
    ``env.agents`` empties; with ``steps=None``, plays exactly one episode. Returns the
    records in order: ``("reset", observations, infos)`` and
    ``("step", observations, rewards, terminations, truncations, infos)``.
    """
    obs, infos = env.reset(seed=seed)
    traj: list[tuple] = [("reset", obs, infos)]
    acts = random_joint_actions(env, action_seed)
    t = 0
    while (t < steps) if steps is not None else env.agents:
        traj.append(("step", *env.step(next(acts))))
        t += 1
        if steps is not None and not env.agents:
            traj.append(("reset", *env.reset()))
    return traj


def _compare_records(a: tuple, b: tuple, where: str) -> None:
    """Two rollout records are equal field by field and agent by agent, or an AssertionError says where not."""
    if a[0] != b[0]:
        raise AssertionError(f"{where}: one run did {a[0]!r}, the other {b[0]!r} (the episodes ended at different steps)")
    for field, x, y in zip(_RESET_FIELDS if a[0] == "reset" else _STEP_FIELDS, a[1:], b[1:]):
        if set(x) != set(y):
            raise AssertionError(f"{where}: {field} name agents {sorted(x)} vs {sorted(y)}")
        for agent, value in x.items():
            if not data_equivalence(value, y[agent], exact=True):
                raise AssertionError(f"{where}: {field} of agent {agent!r} differ:\n{value!r}\n!=\n{y[agent]!r}")


def check_game_observations(env, trajectory: list[tuple]) -> None:
    """Every observation of a :func:`game_rollout` lies inside its agent's observation space."""
    step = 0
    for kind, obs, *_ in trajectory:
        for agent, o in obs.items():
            if not env.observation_space(agent).contains(o):
                where = f"step {step}" if kind == "step" else f"reset before step {step}"
                raise AssertionError(f"{where}: observation of agent {agent!r} outside {env.observation_space(agent)}:\n{o!r}")
        step += kind == "step"


def check_game_api(game: str | Callable[..., Any], kwargs: dict | None = None, *, num_cycles: int = 50):
    """PettingZoo's ``parallel_api_test`` on a fresh game, with its warnings made failures; returns the env.

    Also: each agent's spaces are the same object on every call, and Box observation
    spaces are float32 (the suite's convention).
    """
    import warnings

    from pettingzoo.test import parallel_api_test

    env = _build_game(game, kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=num_cycles)
    api = [str(w.message) for w in caught if "pettingzoo" in str(w.filename)]
    if api:
        raise AssertionError(f"{_game_name(game)}: parallel_api_test warned: {api}")
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        if space is not env.observation_space(agent) or env.action_space(agent) is not env.action_space(agent):
            raise AssertionError(f"{_game_name(game)}: spaces of agent {agent!r} are rebuilt on every call")
        if isinstance(space, gym.spaces.Box) and space.dtype != np.float32:
            raise AssertionError(f"{_game_name(game)}: observation space of agent {agent!r} has dtype {space.dtype}, not float32")
    return env


def check_game_determinism(
    game: str | Callable[..., Any],
    kwargs: dict | None = None,
    *,
    seed: int = 5,
    steps: int | None = 25,
    action_seed: int = 9,
    other_seed: int | None = None,
    min_episodes: int = 1,
) -> tuple[list[tuple], list[tuple]]:
    """Two fresh games reset with ``seed`` and fed the same actions give the same :func:`game_rollout`.

    Compares every record (reset and step) field by field and agent by agent with
    gymnasium's ``data_equivalence(..., exact=True)`` (a replay is bit for bit); checks the observations lie in their spaces and the
    rollout starts at least ``min_episodes`` episodes. Then replays the first game with
    ``other_seed`` (default ``seed + 1``, same actions), whose observations must differ
    somewhere: a game that ignores its seed fails. Returns both trajectories
    ``(same_seed, other_seed)`` for game-specific checks.
    """
    name = _game_name(game)
    env_a, env_b = _build_game(game, kwargs), _build_game(game, kwargs)
    run_a = game_rollout(env_a, seed, steps, action_seed)
    run_b = game_rollout(env_b, seed, steps, action_seed)
    step = 0
    for a, b in zip(run_a, run_b):
        _compare_records(a, b, f"{name} seed {seed}, " + (f"step {step}" if a[0] == "step" else f"reset before step {step}"))
        step += a[0] == "step"
    if len(run_a) != len(run_b):
        raise AssertionError(f"{name} seed {seed}: one run has {len(run_a)} records, the other {len(run_b)}")
    check_game_observations(env_a, run_a)
    episodes = sum(rec[0] == "reset" for rec in run_a)
    if episodes < min_episodes:
        raise AssertionError(f"{name}: the rollout started {episodes} episodes, fewer than min_episodes={min_episodes}")
    other = seed + 1 if other_seed is None else other_seed
    run_c = game_rollout(env_a, other, steps, action_seed)
    if all(data_equivalence(a[1], c[1], exact=True) for a, c in zip(run_a, run_c)):
        raise AssertionError(f"{name}: seeds {seed} and {other} gave the same observations over {min(len(run_a), len(run_c))} records")
    env_a.close()
    env_b.close()
    return run_a, run_c


def _match(a: Any, b: Any, atol: float | None) -> bool:
    """``atol`` None: gymnasium's ``data_equivalence`` (arrays within 1e-5, relative and absolute);
    0: exactly equal; else every element within ``atol``."""
    if atol is None:
        return bool(data_equivalence(a, b)) or bool(np.array_equal(a, b))  # 0.5 vs np.float32(0.5): types differ
    va, vb = np.asarray(a), np.asarray(b)
    if va.dtype == object or vb.dtype == object or va.dtype.kind in "USb" or vb.dtype.kind in "USb":
        return bool(data_equivalence(a, b, exact=True)) or bool(np.array_equal(va, vb))
    if atol == 0:
        return bool(np.array_equal(va, vb, equal_nan=True))
    return va.shape == vb.shape and bool(np.allclose(va.astype(float), vb.astype(float), rtol=0.0, atol=atol))


def _differ(what: str, single: Any, batch: Any) -> AssertionError:
    try:
        gap = f" (largest gap {np.max(np.abs(np.asarray(single, float) - np.asarray(batch, float))):.3g})"
    except (TypeError, ValueError):
        gap = ""
    return AssertionError(f"{what} differs{gap}:\n{single!r} (single)\n!=\n{batch!r} (batch)")


def _infos_match(single: dict, copy: dict, atol: float, where: str) -> None:
    if set(single) != set(copy):
        raise AssertionError(f"{where}: info keys differ: {sorted(single)} vs {sorted(copy)}")
    for k, value in single.items():
        if not _match(value, copy[k], atol):
            raise _differ(f"{where}: info[{k!r}]", value, copy[k])


def check_game_batch_matches_single(
    game: str | Callable[..., Any],
    kwargs: dict | None = None,
    *,
    num_envs: int = 3,
    seed: int = 20,
    steps: int = 20,
    action_seed: int = 0,
    edit_actions: Callable[[dict[str, np.ndarray], Any], None] | None = None,
    atol: float | None = None,
    reward_atol: float | None = 0.0,
    info_atol: float | None = 0.0,
) -> int:
    """Copy ``i`` of a game's batched core seeded ``seed + i`` follows a single game reset with ``seed + i``.

    The game must be a :class:`~deploy_envs.core.views.ParallelGameView`; its
    ``core_class`` is built with ``num_envs`` copies and the same ``kwargs``. Both are
    stepped ``steps`` times with the same random joint actions (``num_envs`` draws of
    :func:`random_joint_actions` with ``action_seed`` a step, stacked;
    ``edit_actions(actions, core)`` may change that batch in place, e.g. to force a branch
    in one copy). Where a copy's
    episode ends, the core resets that copy and the single game calls ``reset()``.
    Observations, rewards, done flags and every info entry (at reset and at each step) of
    every agent must agree; each tolerance (``atol`` for observations, ``reward_atol``,
    ``info_atol`` for numbers in infos) is None for gymnasium's ``data_equivalence`` (within
    1e-5), 0 for exact equality, or the largest absolute difference allowed (batched
    kernels may differ from batch-1 ones in the last bits). Strings and booleans always
    match exactly. Returns how many copy-episodes ended.
    """
    from gymnasium.utils import seeding

    from deploy_envs.core.batched import select_info
    from deploy_envs.core.views import ParallelGameView

    name = _game_name(game)
    singles = [_build_game(game, kwargs) for _ in range(num_envs)]
    if not isinstance(singles[0], ParallelGameView):
        raise TypeError(f"{name} built {type(singles[0]).__name__}, not a ParallelGameView over a batched core")
    core = type(singles[0]).core_class(num_envs=num_envs, **(kwargs or {}))
    agents = singles[0].possible_agents
    for i in range(num_envs):
        core.rngs[i], _ = seeding.np_random(seed + i)

    def compare_reset(ids, c_obs, c_info, t):
        for j, i in enumerate(ids):
            obs, info = singles[i].reset(seed=seed + i) if t == 0 else singles[i].reset()
            for a in agents:
                where = f"{name} reset before step {t}, agent {a!r}, copy {i}"
                if not _match(obs[a], c_obs[a][j], atol):
                    raise _differ(f"{where}: observation", obs[a], c_obs[a][j])
                _infos_match(info[a], select_info(c_info[a], j), info_atol, where)

    idx = np.arange(num_envs)
    compare_reset(idx, *core.reset_indices(idx), 0)
    acts = random_joint_actions(singles[0], action_seed)
    ended = 0
    for t in range(steps):
        draws = [next(acts) for _ in range(num_envs)]
        actions = {a: np.stack([np.asarray(d[a]) for d in draws]) for a in agents}
        if edit_actions is not None:
            edit_actions(actions, core)
        c_obs, c_rew, c_term, c_trunc, c_info = core.step_indices(idx, core.validate_actions(actions, num_envs))
        for i, env in enumerate(singles):
            obs, rew, term, trunc, info = env.step({a: actions[a][i] for a in agents})
            for a in agents:
                where = f"{name} step {t}, agent {a!r}, copy {i}"
                if not _match(obs[a], c_obs[a][i], atol):
                    raise _differ(f"{where}: observation", obs[a], c_obs[a][i])
                if not _match(rew[a], c_rew[a][i], reward_atol):
                    raise _differ(f"{where}: reward", rew[a], c_rew[a][i])
                if (term[a], trunc[a]) != (bool(c_term[i]), bool(c_trunc[i])):
                    raise AssertionError(f"{where}: done flags {(term[a], trunc[a])} (single) vs {(bool(c_term[i]), bool(c_trunc[i]))} (batch)")
                _infos_match(info[a], select_info(c_info[a], i), info_atol, where)
        done = np.flatnonzero(np.asarray(c_term) | np.asarray(c_trunc))
        ended += len(done)
        if len(done):
            compare_reset(done, *core.reset_indices(done), t + 1)
    core.close()
    for env in singles:
        env.close()
    return ended


def smoke_catalog(num_envs: int = 2, seed: int = 0) -> list[str]:
    """Build, reset and step every registered env (single and native batch) and game once (those whose extra is installed).

    Uses each entry's small ``test_kwargs``. Returns the ids checked; raises the first
    error with the id that raised it. CI runs this in a bare install (no extras) to show
    that every registered id works there.
    """
    from deploy_envs.core.extras import available
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game

    checked = []
    for env_id, entry in sorted(ENV_CATALOG.items()):
        if entry.extra is not None and not available(entry.extra):
            continue  # needs an optional extra that is not installed
        try:
            env = gym.make(env_id, **entry.test_kwargs)
            env.reset(seed=seed)
            env.action_space.seed(seed)
            env.step(env.action_space.sample())
            env.close()
            venv = gym.make_vec(env_id, num_envs=num_envs, **entry.test_kwargs)
            venv.reset(seed=seed)
            venv.action_space.seed(seed)
            venv.step(venv.action_space.sample())
            venv.close()
        except Exception as exc:
            raise AssertionError(f"{env_id}: {type(exc).__name__}: {exc}") from exc
        checked.append(env_id)
    for game_id, entry in sorted(GAME_CATALOG.items()):
        if entry.extra is not None and not available(entry.extra):
            continue
        try:
            game = make_game(game_id, **entry.test_kwargs)
            game.reset(seed=seed)
            game.step(next(random_joint_actions(game, seed)))
            game.close()
        except Exception as exc:
            raise AssertionError(f"{game_id}: {type(exc).__name__}: {exc}") from exc
        checked.append(game_id)
    return checked


def check_scenario(scenario: str, *, episodes: int | None = None, agents: list[str] | None = None):
    """Run a scenario (a shipped name or a file) on shipped agents only and require its checks to pass.

    ``episodes`` overrides the protocol (tests use a smaller sample), ``agents`` runs a subset.
    Raises ``AssertionError`` listing each failed check with both sides' values; returns the
    :class:`~deploy_envs.scenarios.ScenarioResult` for further checks.
    """
    from deploy_envs.scenarios import load_scenario, run_scenario

    result = run_scenario(load_scenario(scenario), episodes=episodes, train="never", agents=agents)
    if not result.checks:
        raise AssertionError(f"{scenario}: no expectation was checked")
    failed = [f"{c.expression} ({c.left:.4g} vs {c.right:.4g})" for c in result.checks if not c.passed]
    if failed:
        raise AssertionError(f"{scenario}: {failed}")
    return result

"""Property-based fuzzing of every registered env (single and vector view) and game.

Each target is built twice, as an env ``A`` and a twin ``B`` with the same arguments and
seed. Hypothesis draws sequences of inputs; a bad input (seed, options, reset mask,
action) is given to ``A`` alone and must raise ``ValueError``/``TypeError`` naming the
argument; a valid input is given to both and must be accepted. After every input the two
must still be equal: the same RNG states and the same outputs of the next valid step.
The number of inputs tried is printed at the end of the module (run with ``-s`` to see it)
and written to the file named by ``DEPLOY_ENVS_FUZZ_REPORT`` when that is set.
"""
from __future__ import annotations

import json
import os
import warnings
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game
from deploy_envs.core.validation import Option

ENV_IDS = sorted(ENV_CATALOG)
GAME_IDS = sorted(GAME_CATALOG)
TARGETS = [("single", e) for e in ENV_IDS] + [("vector", e) for e in ENV_IDS] + [("game", g) for g in GAME_IDS]
NUM_ENVS = 3
EXAMPLES = int(os.environ.get("DEPLOY_ENVS_FUZZ_EXAMPLES", "30"))
OPS_PER_EXAMPLE = 3
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COUNTS: Counter = Counter()
_PAIRS: dict = {}


# --------------------------------------------------------------------- targets
def _build(kind: str, target_id: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "single":
            return gym.make(target_id, **ENV_CATALOG[target_id].test_kwargs).unwrapped
        if kind == "vector":
            return gym.make_vec(target_id, num_envs=NUM_ENVS, **ENV_CATALOG[target_id].test_kwargs)
        return make_game(target_id, **GAME_CATALOG[target_id].test_kwargs)


class Pair:
    """An env and its twin, kept equal by feeding both the same valid inputs."""

    def __init__(self, kind: str, target_id: str) -> None:
        self.kind, self.id = kind, target_id
        self.a, self.b = _build(kind, target_id), _build(kind, target_id)
        self.step_no = 0
        self.reset(seed=0)

    # both envs ----------------------------------------------------------------
    def reset(self, **kw):
        out_a, out_b = self.a.reset(**kw), self.b.reset(**kw)
        assert data_equivalence(out_a, out_b), f"{self.id}: twins differ after reset({kw})"
        return out_a

    def valid_action(self):
        self.step_no += 1
        if self.kind == "game":
            out = {}
            for j, role in enumerate(self.a.possible_agents):
                space = self.a.action_space(role)
                space.seed(1000 * self.step_no + j)
                out[role] = space.sample()
            return out
        space = self.a.action_space
        space.seed(self.step_no)
        return space.sample()

    def step(self):
        action = self.valid_action()
        out_a, out_b = self.a.step(action), self.b.step(action)
        assert data_equivalence(out_a, out_b), f"{self.id} ({self.kind}): twins differ after a valid step"
        if self.kind == "single" and (out_a[2] or out_a[3]):
            self.reset(seed=self.step_no)
        if self.kind == "game" and not self.a.agents:
            self.reset(seed=self.step_no)
        return out_a

    def core(self, env):
        return env.core if hasattr(env, "core") else env.unwrapped.core

    def check_twins(self, what: str) -> None:
        rngs_a = [r.bit_generator.state for r in self.core(self.a).rngs]
        rngs_b = [r.bit_generator.state for r in self.core(self.b).rngs]
        assert rngs_a == rngs_b, f"{self.id} ({self.kind}): RNG changed by refused {what}"
        self.step()  # the next outputs agree too


def pair(kind: str, target_id: str) -> Pair:
    key = (kind, target_id)
    if key not in _PAIRS:
        _PAIRS.clear()  # one target alive at a time keeps memory flat
        _PAIRS[key] = Pair(kind, target_id)
    return _PAIRS[key]


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    total = sum(COUNTS.values())
    print(f"\nfuzz: {total} inputs tried ({dict(sorted(COUNTS.items()))})")
    path = os.environ.get("DEPLOY_ENVS_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump({"total": total, "by_kind": dict(COUNTS), "examples_per_target": EXAMPLES, "targets": len(TARGETS)}, fh, indent=1)


# ------------------------------------------------------------- bad inputs
BAD_SEEDS = [-1, -(2**40), 1.5, float("nan"), "7", True, False, b"1", object(), np.float64(3.0), 2.0]
BAD_OPTIONS = ["x", 1, 1.5, [("a", 1)], ("a",), {"__no_such_option__": 0}, {1: 2}]


def bad_option_values(spec: Option, k: int) -> list:
    if spec.kind is bool:
        vals = ["maybe", "True", 1, 0, 0.5, np.float32(1.0), [True] * (k + 1)]
    elif spec.kind is int:
        vals = [1.5, "1", True, np.bool_(False), float("nan"), 1 + 2j, -1, 10**9, [[0]], object()]
        if spec.per_copy:
            vals.append(list(range(k + 1)))
    else:
        vals = ["0.5", True, float("nan"), float("inf"), 1j]
    return vals


def _valid_option_values(env, spec: Option, k: int) -> list:
    core = env.core if hasattr(env, "core") else env.unwrapped.core
    if spec.kind is bool:
        return [True, False, None]
    if spec.allowed is not None:
        allowed = spec.allowed(core)
        first = allowed.start if isinstance(allowed, range) else int(np.asarray(allowed)[0])
        return [first, None] + ([[first] * k] if spec.per_copy else [])
    return [0, None]


def bad_arrays(space: gym.spaces.Space, valid, draw) -> list:
    """Malformed versions of the valid (batched or single) action ``valid``."""
    v = np.asarray(valid)
    out = [None, "abc", [[0.0], [0.0, 1.0]], object()]
    out += [v.astype(complex) + 1j, v.astype(str), v.astype(object)]
    if v.ndim >= 1:
        out += [v[None], np.concatenate([v, v[:1]]), v[:-1] if len(v) > 1 else v[:0]]
        if v.ndim >= 2 and v.shape != v.T.shape:
            out.append(v.T)
        if v.ndim >= 2:
            out.append(v.reshape(-1))
    else:
        out.append(v[None])  # a single Discrete takes a scalar, not a length-1 array
    if isinstance(space, gym.spaces.Box):
        out.append(np.ones(v.shape, dtype=bool))
        for bad in (np.nan, np.inf, -np.inf):
            w = v.astype(np.float64).copy()
            if w.size:
                w.flat[draw(st.integers(0, w.size - 1))] = bad
                out.append(w)
        hi = float(np.max(space.high))
        if np.isfinite(hi) and v.size:
            w = v.astype(np.float64).copy()
            w.flat[draw(st.integers(0, w.size - 1))] = hi + 1.0
            out.append(w)
    else:
        n = space.n if isinstance(space, gym.spaces.Discrete) else np.asarray(space.nvec).max()
        start = int(np.min(space.start))
        out += [v + 0.5, np.ones(v.shape, dtype=bool), np.full(v.shape, start - 1), np.full(v.shape, start + n + 5), np.full(v.shape, np.nan)]
    return out


def draw_bad(p: Pair, draw):
    """A bad input: (description, callable on one env, names the message may use)."""
    env = p.a
    core = p.core(env)
    k = NUM_ENVS if p.kind == "vector" else 1
    kinds = ["seed", "options", "action", "action", "action", "seed_and_options"]
    if core.reset_options:
        kinds.append("option_value")
    if p.kind == "vector":
        kinds += ["seed_list", "reset_mask"]
    kind = draw(st.sampled_from(kinds))
    if kind == "seed":
        seed = draw(st.sampled_from(BAD_SEEDS))
        return kind, lambda e: e.reset(seed=seed), ("seed",)
    if kind == "seed_list":
        seeds = [draw(st.integers(0, 2**31)) for _ in range(NUM_ENVS)]
        choice = draw(st.integers(0, 2))
        if choice == 0:
            seeds[draw(st.integers(0, NUM_ENVS - 1))] = draw(st.sampled_from(BAD_SEEDS[:-1]))
        elif choice == 1:
            seeds = seeds + [0]
        else:
            seeds = [seeds]
        return kind, lambda e: e.reset(seed=seeds), ("seed",)
    if kind == "options":
        opts = draw(st.sampled_from(BAD_OPTIONS))
        return kind, lambda e: e.reset(options=opts), ("options",)
    if kind == "seed_and_options":  # the seed is valid: the RNG must not be reseeded anyway
        seed = draw(st.integers(0, 2**31))
        opts = draw(st.sampled_from(BAD_OPTIONS))
        return kind, lambda e: e.reset(seed=seed, options=opts), ("options",)
    if kind == "option_value":
        key = draw(st.sampled_from(sorted(core.reset_options)))
        value = draw(st.sampled_from(bad_option_values(core.reset_options[key], k)))
        seed = draw(st.one_of(st.none(), st.integers(0, 2**31)))
        return kind, lambda e: e.reset(seed=seed, options={key: value}), ("options",)
    if kind == "reset_mask":
        mask = draw(st.sampled_from([np.ones(NUM_ENVS, int), np.ones(NUM_ENVS + 1, bool), np.ones((NUM_ENVS, 1), bool),
                                     ["yes"] * NUM_ENVS, "all", 1, np.ones(NUM_ENVS, float)]))
        return kind, lambda e: e.reset(options={"reset_mask": mask}), ("reset_mask",)
    # action
    valid = p.valid_action()
    if p.kind == "game":
        roles = list(env.possible_agents)
        how = draw(st.sampled_from(["not_dict", "missing", "extra", "role"]))
        if how == "not_dict":
            bad = [valid[r] for r in roles]
        elif how == "missing":
            bad = {r: valid[r] for r in roles[1:]}
        elif how == "extra":
            bad = {**valid, "__intruder__": valid[roles[0]]}
        else:
            role = draw(st.sampled_from(roles))
            bad = {**valid, role: draw(st.sampled_from(bad_arrays(env.action_space(role), valid[role], draw)))}
        return "action", lambda e: e.step(bad), ("action",)
    space = env.single_action_space if p.kind == "vector" else env.action_space
    bad = draw(st.sampled_from(bad_arrays(space, valid, draw)))
    return "action", lambda e: e.step(bad), ("action",)


def draw_valid(p: Pair, draw):
    """A valid input, given to both twins."""
    core = p.core(p.a)
    k = NUM_ENVS if p.kind == "vector" else 1
    choices = ["step", "step", "seeded_reset"]
    if p.kind == "vector":
        choices += ["empty_mask", "partial_mask"]
    if core.reset_options:
        choices.append("option")
    kind = draw(st.sampled_from(choices))
    if kind == "step":
        p.step()
    elif kind == "seeded_reset":
        seed = draw(st.one_of(st.integers(0, 2**63), st.just(np.int64(5))))
        if p.kind == "vector" and draw(st.booleans()):
            seed = [draw(st.one_of(st.none(), st.integers(0, 2**32))) for _ in range(NUM_ENVS)]
        p.reset(seed=seed)
    elif kind == "empty_mask":
        before = p.a._obs.copy()
        obs, info = p.reset(options={"reset_mask": np.zeros(NUM_ENVS, bool)})
        assert np.array_equal(obs, before) and not info, f"{p.id}: an all-False reset_mask is not a no-op"
    elif kind == "partial_mask":
        mask = np.array([draw(st.booleans()) for _ in range(NUM_ENVS)])
        p.reset(seed=draw(st.integers(0, 2**31)), options={"reset_mask": mask})
    else:
        key = draw(st.sampled_from(sorted(core.reset_options)))
        value = draw(st.sampled_from(_valid_option_values(p.a, core.reset_options[key], k)))
        p.reset(seed=draw(st.integers(0, 2**31)), options={key: value})
    COUNTS["valid"] += 1


@pytest.mark.parametrize("kind,target_id", TARGETS, ids=[f"{k}:{t.split('/')[-1]}" for k, t in TARGETS])
@FUZZ
@given(data=st.data())
def test_refused_input_changes_nothing(kind, target_id, data):
    p = pair(kind, target_id)
    for _ in range(OPS_PER_EXAMPLE):
        if data.draw(st.booleans(), label="bad?"):
            what, call, names = draw_bad(p, data.draw)
            with pytest.raises((ValueError, TypeError)) as err:
                call(p.a)
            message = str(err.value)
            assert any(n in message for n in names), f"{target_id} ({kind}): refused {what} without naming it: {message}"
            COUNTS["bad_" + what] += 1
            p.check_twins(what)
        else:
            draw_valid(p, data.draw)


# ------------------------------------------------------------ constructors
def _core_class(target_id: str):
    import importlib

    if target_id in ENV_CATALOG:
        module, _, attr = gym.registry[target_id].entry_point.partition(":")
        return getattr(importlib.import_module(module), attr).core_class
    env = make_game(target_id, **GAME_CATALOG[target_id].test_kwargs)
    return type(env.core)


def _bad_arguments(hint) -> tuple[list, list]:
    """(values of the wrong type for ``hint``, values of the right type worth trying)."""
    from deploy_envs.core.validation import _matches

    pool = [1.5, "3", "__bogus__", True, None, float("nan"), float("inf"), -1, 0, 10**12, -(10**12), 1e300, 1 + 2j,
            [1.5], [], ["__bogus__"], [-1], [10**12], object(), "gpu9"]
    wrong, typed = [], []
    for v in pool:
        (typed if _matches(v, hint) else wrong).append(v)
    return wrong, typed


CONSTRUCTOR_TARGETS = ENV_IDS + GAME_IDS


def _make(target_id: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if target_id in ENV_CATALOG:
            return gym.make(target_id, **kwargs).unwrapped
        return make_game(target_id, **kwargs)


def _runs_in_space(env, target_id: str, arg: str, value) -> None:
    """An accepted constructor value must give observations inside their space."""
    if target_id in GAME_CATALOG:
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            for a in env.agents:
                assert env.observation_space(a).contains(obs[a]), f"{target_id}({arg}={value!r}): {a}'s observation left its space"
            if not env.agents:
                break
            obs, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
        return
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(3):
        assert env.observation_space.contains(obs), f"{target_id}({arg}={value!r}): observation left its space"
        obs, reward, term, trunc, _ = env.step(env.action_space.sample())
        assert np.isfinite(reward), f"{target_id}({arg}={value!r}): reward {reward}"
        if term or trunc:
            obs, _ = env.reset()


@pytest.mark.parametrize("target_id", CONSTRUCTOR_TARGETS, ids=[t.split("/")[-1] for t in CONSTRUCTOR_TARGETS])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_constructor_arguments_are_checked(target_id, data):
    from deploy_envs.core.validation import constructor_arguments, constructor_hints

    core_class = _core_class(target_id)
    args = sorted(constructor_arguments(core_class) or {})
    hints = constructor_hints(core_class)
    assert args, f"{target_id}: no declared constructor arguments"
    arg = data.draw(st.sampled_from(args), label="argument")
    wrong, typed = _bad_arguments(hints.get(arg))
    base = dict((ENV_CATALOG.get(target_id) or GAME_CATALOG[target_id]).test_kwargs)
    if wrong and (not typed or data.draw(st.booleans(), label="wrong type?")):
        value = data.draw(st.sampled_from(wrong), label="value")
        with pytest.raises((ValueError, TypeError)) as err:
            _make(target_id, **{**base, arg: value})
        assert arg in str(err.value), f"{target_id}: refused {arg}={value!r} without naming it: {err.value}"
        COUNTS["bad_constructor_type"] += 1
        return
    value = data.draw(st.sampled_from(typed), label="value")
    try:
        env = _make(target_id, **{**base, arg: value})
    except (ValueError, TypeError) as err:
        assert arg in str(err), f"{target_id}: refused {arg}={value!r} without naming it: {err}"
        COUNTS["bad_constructor_value"] += 1
        return
    COUNTS["accepted_constructor_value"] += 1
    try:
        _runs_in_space(env, target_id, arg, value)
    finally:
        env.close()

"""Evasion-v0, SpatialEvasion-v0 and AttackDefense-v0 share one query-attack base
(``deploy_envs.topics.evasion.query_attack``): their seeded rollouts are those recorded before
the base existed (``tests/data/query_attack_rollouts.npz``; regenerate only for an intended
change of behaviour, with ``python tests/test_query_attack.py``)."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import deploy_envs  # noqa: F401  (registers the envs)

GOLDEN = Path(__file__).resolve().parent / "data" / "query_attack_rollouts.npz"

ENVS = {
    "evasion_scores": ("deploy_envs/Evasion-v0", {"max_queries": 4}),
    "evasion_white_box_l2_set_targeted": ("deploy_envs/Evasion-v0", {"threat_model": "white_box", "norm": "l2", "epsilon": 1.0, "action_mode": "set", "targeted": True, "max_queries": 3, "query_cost": 0.1}),
    "evasion_decision_target_class": ("deploy_envs/Evasion-v0", {"threat_model": "decision", "targeted": True, "target_class": 3, "max_queries": 5}),
    "evasion_eot": ("deploy_envs/Evasion-v0", {"transforms": "default", "eot_samples": 3, "max_queries": 3}),
    "spatial_continuous": ("deploy_envs/SpatialEvasion-v0", {"max_queries": 4}),
    "spatial_grid_decision_targeted": ("deploy_envs/SpatialEvasion-v0", {"action_type": "grid", "n_angles": 5, "n_shifts": 3, "threat_model": "decision", "targeted": True, "max_queries": 3}),
}
STEPS, COPIES, SEED = 9, 4, 7


def _numeric(info):
    return {k: np.asarray(v) for k, v in info.items() if not k.startswith("_") and np.asarray(v).dtype.kind in "biuf"}


def env_rollout(env_id, kwargs):
    """Observations, rewards, flags and numeric info of a seeded native-batch rollout (NEXT_STEP autoresets included)."""
    venv = gym.make_vec(env_id, num_envs=COPIES, **kwargs)
    obs, info = venv.reset(seed=SEED)
    venv.action_space.seed(SEED)
    out = {"obs_0": obs}
    out.update({f"reset_{k}": v for k, v in _numeric(info).items()})
    for t in range(STEPS):
        obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
        out[f"obs_{t + 1}"], out[f"reward_{t + 1}"], out[f"done_{t + 1}"] = obs, rew, np.stack([term, trunc])
        out.update({f"info_{t + 1}_{k}": v for k, v in _numeric(info).items()})
    venv.close()
    return out


def game_rollout():
    """The same for the AttackDefense game's batched core (per-role observations, rewards and info)."""
    from deploy_envs.topics.evasion.attack_defense import AttackDefenseCore

    core = AttackDefenseCore(num_envs=3, rounds=3, n_samples=4)
    core.rngs = [np.random.default_rng(SEED + i) for i in range(3)]
    idx = np.arange(3)
    obs, info = core.reset_indices(idx)
    out = {f"obs_0_{a}": o for a, o in obs.items()}
    out.update({f"reset_{a}_{k}": v for a in info for k, v in _numeric(info[a]).items()})
    rng = np.random.default_rng(SEED)
    for t in range(3):
        actions = {"attacker": rng.uniform(-1, 1, (3, core.d)).astype(np.float32), "defender": rng.integers(core.D, size=3)}
        obs, rew, term, trunc, info = core.step_indices(idx, core.validate_actions(actions, 3))
        out.update({f"obs_{t + 1}_{a}": o for a, o in obs.items()})
        out.update({f"reward_{t + 1}_{a}": r for a, r in rew.items()})
        out[f"done_{t + 1}"] = np.stack([term, trunc])
        out.update({f"info_{t + 1}_{a}_{k}": v for a in info for k, v in _numeric(info[a]).items()})
    return out


def all_rollouts():
    torch.set_num_threads(1)
    out = {}
    for name, (env_id, kwargs) in ENVS.items():
        out.update({f"{name}/{k}": v for k, v in env_rollout(env_id, kwargs).items()})
    out.update({f"attack_defense/{k}": v for k, v in game_rollout().items()})
    return out


def _assert_same(got, golden, prefix):
    keys = sorted(k for k in golden.files if k.startswith(prefix + "/"))
    assert keys and sorted(k for k in got if k.startswith(prefix + "/")) == keys
    for key in keys:
        want, have = golden[key], got[key]
        assert have.shape == want.shape and have.dtype == want.dtype, key
        if want.dtype.kind == "f":  # bit-identical here; other CPUs may round a forward pass differently
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            assert (have == want).all(), key


@pytest.mark.parametrize("name", list(ENVS))
def test_env_rollout_is_unchanged(name):
    got = {f"{name}/{k}": v for k, v in env_rollout(*ENVS[name]).items()}
    _assert_same(got, np.load(GOLDEN), name)


def test_attack_defense_rollout_is_unchanged():
    got = {f"attack_defense/{k}": v for k, v in game_rollout().items()}
    _assert_same(got, np.load(GOLDEN), "attack_defense")


def test_the_three_share_the_query_attack_base():
    from deploy_envs.topics.evasion.attack_defense import AttackDefenseCore
    from deploy_envs.topics.evasion.evasion import EvasionCore
    from deploy_envs.topics.evasion.query_attack import VictimQueries
    from deploy_envs.topics.evasion.spatial_evasion import SpatialEvasionCore

    for cls in (EvasionCore, SpatialEvasionCore, AttackDefenseCore):
        assert issubclass(cls, VictimQueries), cls


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **all_rollouts())
    print(f"wrote {GOLDEN}")

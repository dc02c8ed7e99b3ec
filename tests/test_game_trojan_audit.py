"""TrojanAudit-v0: PettingZoo conformance, multi-step seed determinism, batch/single agreement, rewards, arguments."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import deploy_envs  # noqa: F401  (registers the games)
from deploy_envs.core.registration import GAME_CATALOG, make_game
from deploy_envs.testing import (
    check_game_api,
    check_game_batch_matches_single,
    check_game_determinism,
)
from deploy_envs.topics.trojans.trojan_audit import AGENTS, TrojanAuditCore

parallel_env = partial(make_game, "deploy_envs/TrojanAudit-v0")

GAME_ID = "deploy_envs/TrojanAudit-v0"
SMALL = dict(GAME_CATALOG[GAME_ID].test_kwargs)


def design(core, insert=True, blend=False, size=3, row=0.0, col=0.0, target=4, alpha=1.0, pattern=1.0):
    """A designer action: patch of side ``size`` (or a blend) with the given corner, target and pattern."""
    a = np.full(core.action_spaces["designer"].shape, -1.0, np.float32)
    s = core.design_slices
    a[s["insert"]] = 1.0 if insert else -1.0
    a[s["blend"]] = 1.0 if blend else -1.0
    a[s["size"]] = (size - 1 + 0.5) / core.max_patch * 2 - 1
    a[s["row"]], a[s["col"]], a[s["alpha"]] = row, col, alpha
    a[s["pattern"]] = pattern
    a[s["target"].start + target] = 1.0
    return a


def test_registered_and_parallel_api():
    assert GAME_ID in GAME_CATALOG and GAME_CATALOG[GAME_ID].topic == "interpretability"
    env = check_game_api(GAME_ID, SMALL, num_cycles=12)
    assert env.possible_agents == list(AGENTS)
    for a in AGENTS:
        assert env.observation_space(a) is env.observation_space(a) and env.observation_space(a).dtype == np.float32


def test_multi_step_seed_determinism():
    check_game_determinism(GAME_ID, SMALL, seed=5, steps=10, action_seed=9, min_episodes=3)  # several episodes


def test_batched_core_agrees_with_single_copies():
    def probe_do_not_declare(actions, core):
        actions["auditor"][:, core.audit_slices["declare"]] = -1.0

    # batched kernels differ from batch-1 ones in the last bits: observations within 1e-5, infos
    # (clean_accuracy, ...) within 1e-6; rewards exactly
    check_game_batch_matches_single(GAME_ID, SMALL, num_envs=2, seed=3, steps=3, edit_actions=probe_do_not_declare, atol=1e-5, info_atol=1e-6)


def test_planted_patch_is_learned_detected_and_scored_zero_sum():
    env = parallel_env(max_queries=2, probe_size=16, train_points=600, train_steps=80, poison_fraction=0.15, constraint_penalty=0.0)
    core = env.core
    obs, info = env.reset(seed=0)
    assert obs["designer"][0] == 1.0 and info["auditor"]["planted"] == -1
    idle = np.zeros(core.action_spaces["auditor"].shape, np.float32)
    obs, rew, term, _, info = env.step({"designer": design(core, size=3, target=4), "auditor": idle})
    assert not any(term.values()) and rew == {"designer": 0.0, "auditor": 0.0}
    assert info["designer"]["attack_success"] >= 0.8, info
    assert info["designer"]["clean_accuracy"] >= core.clean_reference - 0.1
    assert obs["designer"][0] == 0.0 and obs["auditor"][-1] == 0.0
    # the auditor probes with the true trigger: the inputs flip to class 4
    s = core.audit_slices
    probe = np.full(core.action_spaces["auditor"].shape, -1.0, np.float32)
    probe[s["mask"]] = np.where(core.mask[0].ravel() > 0, 1.0, -1.0)
    probe[s["pattern"]] = 1.0
    obs, rew, term, _, info = env.step({"designer": np.zeros_like(design(core)), "auditor": probe})
    flip = obs["auditor"][core.obs_slices["auditor"]["flip_rate"]]
    assert flip.argmax() == 4 and flip[4] >= 0.7
    # declare trojaned with the target and mask: auditor +1, designer -1 (zero-sum without the penalty)
    decl = probe.copy()
    decl[s["declare"]], decl[s["verdict"]] = 1.0, 1.0
    decl[s["target"].start + 4] = 1.0
    obs, rew, term, _, info = env.step({"designer": np.zeros_like(design(core)), "auditor": decl})
    assert all(term.values()) and env.agents == []
    assert rew["auditor"] == 1.0 and rew["designer"] == -1.0
    assert info["auditor"]["planted"] == 1 and info["auditor"]["target_correct"] and info["auditor"]["iou"] == 1.0


def test_clean_design_and_constraint_penalty():
    env = parallel_env(**{**SMALL, "max_accuracy_drop": 0.0, "min_attack_success": 1.0, "constraint_penalty": 0.5})
    core = env.core
    env.reset(seed=1)
    idle = np.full(core.action_spaces["auditor"].shape, -1.0, np.float32)
    _, _, _, _, info = env.step({"designer": design(core, size=1, target=2), "auditor": idle})
    assert info["designer"]["violation"]  # a 1-pixel trojan in 20 steps cannot reach 100% success
    decl = idle.copy()
    decl[core.audit_slices["declare"]] = 1.0  # declares clean: wrong
    _, rew, _, _, info = env.step({"designer": design(core), "auditor": decl})
    assert rew["auditor"] == -1.0 and rew["designer"] == 1.0 - 0.5
    env.reset(seed=1)
    _, _, _, _, info = env.step({"designer": design(core, insert=False), "auditor": idle})
    assert not info["designer"]["violation"] and info["designer"]["attack_success"] == 0.0
    _, rew, _, _, info = env.step({"designer": design(core), "auditor": decl})
    assert rew == {"designer": -1.0, "auditor": 1.0} and info["auditor"]["planted"] == 0 and info["auditor"]["success"]


def test_blend_design_masks_whole_image():
    core = TrojanAuditCore(num_envs=1, **SMALL)
    dec = core.decode_design(design(core, blend=True, alpha=0.0)[None])
    assert dec["blend"][0] and np.allclose(dec["mask"], 0.5 * core.max_blend_alpha)
    dec = core.decode_design(design(core, size=2, row=1.0, col=-1.0)[None])
    assert dec["mask"].sum() == 4 and dec["mask"][0, 6:, :2].all()


@pytest.mark.parametrize("kwargs, name", [
    ({"max_queries": 0}, "max_queries"), ({"poison_fraction": 0}, "poison_fraction"), ({"max_patch": 9}, "max_patch"),
    ({"max_blend_alpha": 1.5}, "max_blend_alpha"), ({"max_accuracy_drop": -0.1}, "max_accuracy_drop"),
    ({"min_attack_success": 2}, "min_attack_success"), ({"constraint_penalty": -1}, "constraint_penalty"),
    ({"train_points": 5}, "train_points"), ({"render_mode": "video"}, "render_mode"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        parallel_env(**kwargs)


def test_out_of_space_actions_are_refused_without_changing_state():
    env = parallel_env(**SMALL, render_mode="ansi")
    env.reset(seed=0)
    good = {a: np.zeros(env.action_space(a).shape, np.float32) for a in AGENTS}
    for bad, name in [({**good, "designer": np.full(good["designer"].shape, 2.0, np.float32)}, "designer"),
                      ({**good, "auditor": np.zeros(64, np.float32)}, "auditor"),
                      ({"designer": good["designer"]}, "auditor")]:
        with pytest.raises(ValueError, match=name):
            env.step(bad)
    assert env.core.phase[0] == 1 and env.agents == list(AGENTS)
    env.step(good)
    assert "audit" in env.render()

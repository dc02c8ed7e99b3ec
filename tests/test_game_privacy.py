"""PrivacyGame-v0: PettingZoo conformance, multi-step seed determinism, batch/single agreement, and the trade-off it prices."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import deploy_envs  # noqa: F401  (registers the games)
from deploy_envs.core.registration import GAME_CATALOG
from deploy_envs.testing import check_game_api, check_game_batch_matches_single, check_game_determinism
from deploy_envs.topics.privacy_audit.baselines import dead_pixels
from deploy_envs.core.registration import make_game
from deploy_envs.topics.privacy_audit.privacy_game import AGENTS

GAME_ID = "deploy_envs/PrivacyGame-v0"
parallel_env = partial(make_game, "deploy_envs/PrivacyGame-v0")
SMALL = dict(GAME_CATALOG[GAME_ID].test_kwargs)


def test_registered_and_parallel_api():
    assert GAME_CATALOG[GAME_ID].topic == "privacy"
    env = check_game_api(GAME_ID, SMALL, num_cycles=6)
    assert env.possible_agents == list(AGENTS)


def test_multi_step_seed_determinism():
    check_game_determinism(GAME_ID, SMALL, seed=5, steps=6, action_seed=9, min_episodes=2)


def test_batched_core_agrees_with_single_copies():
    check_game_batch_matches_single(GAME_ID, SMALL, num_envs=2, seed=3, steps=3, atol=1e-5, reward_atol=1e-9, info_atol=1e-9)


def _play(sigma_action: float, rounds: int = 3, seed: int = 0):
    env = parallel_env(rounds=rounds, runs=128, canary_space="gradient")
    core = env.core
    env.reset(seed=seed)
    coord = int(dead_pixels(core)[0]) * core.K
    aud = np.zeros(core.d + 2, np.float32)
    aud[core.d] = (coord + 0.5) / core.P
    aud[core.d + 1] = 0.8  # a fixed threshold on the gradient canary's score
    out = []
    for _ in range(rounds):
        _, rew, term, _, info = env.step({"trainer": np.array([sigma_action, 0.5], np.float32), "auditor": aud})
        out.append((rew, info["trainer"]))
    return out


def test_more_noise_costs_accuracy_and_lowers_the_audited_bound():
    low, high = _play(0.0), _play(1.0)  # noise multiplier 0.5 vs 8
    eps_low = np.mean([i["eps_lb"] for _, i in low])
    eps_high = np.mean([i["eps_lb"] for _, i in high])
    acc_low = np.mean([i["accuracy"] for _, i in low])
    acc_high = np.mean([i["accuracy"] for _, i in high])
    assert eps_low > eps_high + 0.5, (eps_low, eps_high)
    assert acc_low > acc_high, (acc_low, acc_high)
    assert low[0][1]["claimed_epsilon"] > high[0][1]["claimed_epsilon"]
    for rew, info in low + high:  # the rewards are what the docstring says
        assert rew["auditor"] == pytest.approx(info["eps_lb"])
        assert rew["trainer"] == pytest.approx(-info["eps_lb"] - 10.0 * (1.0 - info["accuracy"]))
        assert info["eps_lb"] <= info["claimed_epsilon"]


def test_bad_arguments_and_actions_are_refused():
    for kwargs, name in (({"runs": 5}, "runs"), ({"sigma_max": 0.1}, "sigma_max"), ({"canary_space": "x"}, "canary_space")):
        with pytest.raises(ValueError, match=name):
            parallel_env(**kwargs)
    env = parallel_env(**SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="trainer"):
        env.step({"trainer": np.array([2.0, 0.5], np.float32), "auditor": np.zeros(66, np.float32)})


def test_scripted_policies_set_the_named_recipes_and_audit_with_the_reference_canaries():
    """The game's scripted policies (PSRO seeds, animation): DP-SGD recipes by noise multiplier, PrivacyAudit-v0's canaries."""
    from deploy_envs.training.game_baselines import role_baselines

    env = parallel_env(**SMALL)
    pols = role_baselines(GAME_ID, env.core)
    assert list(pols["trainer"]) == ["sigma_1_clip_1", "sigma_2_clip_1", "sigma_4_clip_1"]
    assert list(pols["auditor"]) == ["crafted_canary", "mislabeled_canary", "natural_canary"]
    obs, _ = env.reset(seed=0)
    for name, sigma in (("sigma_1_clip_1", 1.0), ("sigma_4_clip_1", 4.0)):
        actions = {"trainer": pols["trainer"][name](obs["trainer"][None])[0], "auditor": pols["auditor"]["crafted_canary"](obs["auditor"][None])[0]}
        assert env.action_space("trainer").contains(actions["trainer"]) and env.action_space("auditor").contains(actions["auditor"])
        obs, _, _, _, info = env.step(actions)
        assert info["trainer"]["noise_multiplier"] == pytest.approx(sigma, rel=1e-5)
        assert info["trainer"]["max_grad_norm"] == pytest.approx(1.0, rel=1e-5)
    assert "gradient_canary" in role_baselines(GAME_ID, parallel_env(**SMALL, canary_space="gradient").core)["auditor"]

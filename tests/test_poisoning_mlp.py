"""Tests of the small-MLP victim of ``deploy_envs/Poisoning-v0`` (batched across copies, warm-started)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.poisoning.mlp_victim import MLPVictims
from deploy_envs.testing import check_determinism, check_single_vector_match

ENV_ID = "deploy_envs/Poisoning-v0"
MLP = {"victim": "mlp", "hidden_size": 8, "budget": 0.004, "train_steps": 3, "final_train_steps": 5}


@pytest.fixture(scope="module")
def core():
    return gym.make(ENV_ID, **MLP).unwrapped.core


def test_clean_mlp_victim_is_accurate_and_observed_within_bounds(core):
    assert isinstance(core.victims, MLPVictims)
    assert core.clean_test_error < 0.1  # an 8-unit MLP on digits
    obs, _ = gym.make(ENV_ID, **MLP).reset(seed=0)
    params = obs[core.obs_slices["params"]]
    assert params.shape == (64 * 8 + 8 + 8 * 10 + 10,)
    assert np.abs(params).max() <= 1.0 and np.abs(params).max() > 0.01
    assert np.allclose(params * core.victims.radius, core.theta_clean.numpy(), atol=1e-5)


def test_batched_mlp_training_equals_training_each_copy_alone(core):
    v = core.victims
    rng = np.random.default_rng(0)
    B, P = 3, 5
    xe = rng.random((B, P, v.d)).astype(np.float32)
    ye = rng.integers(v.K, size=(B, P))
    we = (rng.random((B, P)) < 0.7).astype(np.float32)
    theta0 = core.theta_clean.unsqueeze(0).repeat(B, 1)
    together = v.train(theta0, xe, ye, we, 4)
    for b in range(B):
        alone = v.train(theta0[b : b + 1], xe[b : b + 1], ye[b : b + 1], we[b : b + 1], 4)
        assert torch.allclose(together[b], alone[0], atol=1e-5)
    assert not torch.allclose(together[0], together[1])  # different poison, different victims


def test_mlp_retrain_lowers_the_objective_and_fits_the_poison(core):
    v = core.victims
    x, y = core.x_train, core.y_train
    i = np.arange(20)
    xe, ye = x[i][None], ((y[i] + 1) % v.K)[None]  # 20 label flips
    we = np.ones((1, 20), np.float32)
    theta0 = core.theta_clean[None]
    before = v.objective(theta0, xe, ye, we)
    theta = v.train(theta0, xe, ye, we, 30)
    assert v.objective(theta, xe, ye, we) < before - 1e-2
    ce = torch.nn.functional.cross_entropy
    target = torch.as_tensor(ye[0])
    assert ce(v.scores(theta, x[i])[0], target) < ce(v.scores(theta0, x[i])[0], target) - 0.1  # it learns the flipped labels


def test_mlp_env_is_deterministic_and_matches_its_vector_form():
    check_determinism(ENV_ID, MLP, steps=8)
    check_single_vector_match(ENV_ID, MLP, num_envs=2, steps=8)


def test_linear_white_box_baselines_refuse_the_mlp_victim():
    env = gym.make_vec(ENV_ID, num_envs=1, **MLP)
    with pytest.raises(ValueError, match="mlp"):
        make_baseline("boundary_label_flip").setup(env)
    agent = make_baseline("random_label_flip", seed=0)
    agent.setup(env)  # black-box baselines work on any victim
    obs, _ = env.reset(seed=0)
    a = agent.act(obs, np.ones(1, bool))
    assert env.single_action_space.contains(a[0])

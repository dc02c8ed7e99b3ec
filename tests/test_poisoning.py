"""Tests of ``deploy_envs/Poisoning-v0``: arguments, episode mechanics, batched victims, sanitizers, baselines."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.poisoning.sanitizers import Sanitizer
from deploy_envs.topics.poisoning.victims import LinearVictims, per_example_loss
from deploy_envs.evaluation import evaluate

ENV_ID = "deploy_envs/Poisoning-v0"
FAST = {"train_steps": 3, "final_train_steps": 5}


@pytest.fixture(scope="module")
def digits():
    env = gym.make(ENV_ID, budget=0.004, **FAST)
    core = env.unwrapped.core
    return core.x_train, core.y_train


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"budget": 0.0}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": -0.1}, "budget"),
        ({"victim": "tree"}, "victim"),
        ({"victim": "mlp", "hidden_size": 0}, "hidden_size"),
        ({"victim": "mlp", "mlp_lr": 0.0}, "mlp_lr"),
        ({"sanitizer": "pca"}, "sanitizer"),
        ({"goal": "availability"}, "goal"),
        ({"threat_model": "grey_box"}, "threat_model"),
        ({"goal": "targeted", "target_class": 10}, "target_class"),
        ({"goal": "targeted", "target_class": -1}, "target_class"),
        ({"target_class": 3}, "target_class"),  # needs goal='targeted'
        ({"points_per_step": 0}, "points_per_step"),
        ({"retrain_every": 0}, "retrain_every"),
        ({"sanitizer_quantile": 0.0}, "sanitizer_quantile"),
        ({"knn_k": 0}, "knn_k"),
        ({"lam": 0.0}, "lam"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_full_budget_is_accepted():
    env = gym.make(ENV_ID, budget=1.0, **FAST)
    assert env.unwrapped.core.budget_points == len(env.unwrapped.core.y_train)


def test_episode_spends_the_budget_in_batches_and_ends():
    env = gym.make(ENV_ID, budget=0.01, points_per_step=3, **FAST)
    core = env.unwrapped.core
    assert core.budget_points == 14 and core.max_steps == 5
    _, info = env.reset(seed=0)
    assert info["budget_left"] == 1.0 and info["points_injected"] == 0
    env.action_space.seed(0)
    for t in range(5):
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        assert term == (t == 4) and not trunc
        assert obs[core.obs_slices["budget"]][0] == pytest.approx(info["budget_left"])
    assert info["points_injected"] == 14 and info["budget_left"] == 0.0


def test_retrain_every_k_injections_and_reward_is_the_metric_change():
    env = gym.make(ENV_ID, budget=0.006, retrain_every=3, **FAST)  # 9 points, no sanitizer
    core = env.unwrapped.core
    _, info = env.reset(seed=0)
    clean = info["test_error"]
    env.action_space.seed(1)
    total, retrained = 0.0, []
    done = False
    while not done:
        _, r, done, _, info = env.step(env.action_space.sample())
        retrained.append(info["retrained"])
        if not info["retrained"]:
            assert r == 0.0
        total += r
    assert retrained == [False, False, True] * 3
    assert total == pytest.approx(core.reward_scale * (info["test_error"] - clean), abs=1e-9)


def test_sanitizer_penalty_counts_removed_points():
    env = gym.make(ENV_ID, budget=0.004, sanitizer="centroid", removal_penalty=2.0, **FAST)
    core = env.unwrapped.core
    _, info = env.reset(seed=0)
    clean = info["test_error"]
    far = core.encode(np.ones((1, 1, core.d)), np.zeros((1, 1), int))[0]  # the all-ones vertex labelled 0
    total, done = 0.0, False
    while not done:
        _, r, done, _, info = env.step(far)
        total += r
    assert info["points_removed"] == core.budget_points
    assert info["test_error"] == pytest.approx(clean)  # nothing got in: the victim is the clean one
    assert total == pytest.approx(-2.0 * core.budget_points)


def test_encode_decode_round_trip():
    env = gym.make(ENV_ID, budget=0.004, points_per_step=2, **FAST)
    core = env.unwrapped.core
    rng = np.random.default_rng(0)
    x = rng.random((4, 2, core.d)).astype(np.float32)
    y = rng.integers(core.K, size=(4, 2))
    a = core.encode(x, y)
    assert env.action_space.contains(a[0])
    x2, y2 = core.decode(a)
    np.testing.assert_allclose(x2, x, atol=1e-6)
    np.testing.assert_array_equal(y2, y)
    # the whole label coordinate range maps onto the K classes
    _, lab = core.decode(np.concatenate([np.zeros((2, 2 * core.d + 1)), [[-1.0], [1.0]]], 1).astype(np.float32))
    assert lab[:, 1].tolist() == [0, core.K - 1]


# ------------------------------------------------------------------ victims
@pytest.mark.parametrize("kind", ["logistic", "svm"])
def test_objective_gradient_matches_autograd(kind, digits):
    x, y = digits
    v = LinearVictims(kind, x, y, 10, 1e-3, 5)
    torch.manual_seed(0)
    theta = (torch.randn(2, v.D, v.K) * 0.3).requires_grad_(True)
    rng = np.random.default_rng(0)
    xe = rng.random((2, 3, v.d)).astype(np.float32)
    ye = rng.integers(10, size=(2, 3))
    we = np.array([[1, 0, 1], [1, 1, 1]], np.float32)
    xt, yo, wt = v._extra(xe, ye, we)
    f, g = v.objective_grad(theta.detach(), xt, yo, wt)
    ref = []
    for b in range(2):
        loss = per_example_loss(kind, v.X @ theta[b], v.y).sum() + (per_example_loss(kind, xt[b] @ theta[b], torch.as_tensor(ye[b])) * wt[b]).sum()
        ref.append(loss / (v.N + wt[b].sum()) + 0.5 * v.lam * theta[b].pow(2).sum())
    ref = torch.stack(ref)
    (g_ref,) = torch.autograd.grad(ref.sum(), theta)
    torch.testing.assert_close(f, ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def test_batched_training_equals_training_each_copy_alone(digits):
    x, y = digits
    v = LinearVictims("logistic", x, y, 10, 1e-3, 4)
    rng = np.random.default_rng(1)
    xe = rng.random((3, 4, v.d)).astype(np.float32)
    ye = rng.integers(10, size=(3, 4))
    we = (rng.random((3, 4)) > 0.3).astype(np.float32)
    theta0 = torch.zeros(3, v.D, v.K)
    together = v.train(theta0, xe, ye, we, 30)
    for b in range(3):
        alone = v.train(theta0[b : b + 1], xe[b : b + 1], ye[b : b + 1], we[b : b + 1], 30)
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-4, atol=1e-5)
    assert together.abs().max() <= v.radius


@pytest.mark.parametrize("kind", ["logistic", "svm"])
def test_warm_start_beats_scratch_with_the_same_steps(kind):
    env = gym.make(ENV_ID, victim=kind, budget=0.004, **FAST)
    core = env.unwrapped.core
    v = core.victims
    rng = np.random.default_rng(0)
    i = rng.integers(len(core.y_train), size=(1, 2))
    xe, ye = core.x_train[i], (core.y_train[i] + 1) % 10
    we = np.ones((1, 2), np.float32)
    warm = v.train(core.theta_clean[None], xe, ye, we, 10)
    cold = v.train(torch.zeros_like(warm), xe, ye, we, 10)
    best = v.train(warm, xe, ye, we, 300)
    f_warm, f_cold, f_best = (float(v.objective(t, xe, ye, we)[0]) for t in (warm, cold, best))
    assert f_best <= f_warm + 1e-6
    assert f_warm - f_best < 0.05 * (f_cold - f_best)  # warm start is already close to the optimum


# ---------------------------------------------------------------- sanitizers
def test_sanitizers_screen_the_right_points(digits):
    x, y = digits
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    typical = means[None, [0, 1]]  # class means with their own labels
    flipped = means[None, [0]]  # the class-0 mean labelled 1
    vertex = np.ones((1, 1, x.shape[1]), np.float32)
    ok = np.array([[0, 1]])
    for kind in ("none", "centroid", "knn"):
        s = Sanitizer(kind, x, y, 10)
        assert s.keep(typical, ok).all(), kind
    assert not Sanitizer("centroid", x, y, 10).keep(vertex, np.array([[0]]))[0, 0]
    assert not Sanitizer("knn", x, y, 10).keep(flipped, np.array([[1]]))[0, 0]
    assert Sanitizer("none", x, y, 10).keep(vertex, np.array([[0]]))[0, 0]
    v = LinearVictims("logistic", x, y, 10, 1e-3, 1)
    env = gym.make(ENV_ID, budget=0.004, **FAST)
    theta = env.unwrapped.core.theta_clean[None].repeat(1, 1, 1)
    loss = Sanitizer("loss", x, y, 10)
    assert loss.keep(typical, ok, theta.repeat(1, 1, 1), v).all()
    assert not loss.keep(flipped, np.array([[1]]), theta, v)[0, 0]
    with pytest.raises(ValueError, match="parameters"):
        loss.keep(typical, ok)


# ------------------------------------------------------------- threat models
def test_black_box_observation_has_no_parameters():
    env = gym.make(ENV_ID, threat_model="black_box", num_probes=7, budget=0.004, **FAST)
    core = env.unwrapped.core
    assert "params" not in core.obs_slices
    obs, info = env.reset(seed=0)
    pred = obs[core.obs_slices["predictions"]].reshape(-1, core.K)
    assert pred.shape[0] == core.K + 7
    np.testing.assert_array_equal(pred.sum(1), 1.0)  # one-hot labels, no scores
    assert not any("param" in k or "theta" in k for k in info)
    wb = gym.make(ENV_ID, threat_model="white_box", budget=0.004, **FAST)
    o = wb.reset(seed=0)[0][wb.unwrapped.core.obs_slices["params"]]
    np.testing.assert_allclose(o * wb.unwrapped.core.victims.radius, wb.unwrapped.core.theta_clean.numpy().ravel(), rtol=1e-5, atol=1e-5)


def test_white_box_baselines_refuse_black_box():
    for name in ("boundary_label_flip", "max_loss_poison"):
        agent = make_baseline(name, ENV_ID)
        venv = gym.make_vec(ENV_ID, num_envs=2, threat_model="black_box", budget=0.004, **FAST)
        with pytest.raises(ValueError, match="white_box"):
            agent.setup(venv)


# ------------------------------------------------------------------ targeted
def test_targeted_goal_target_copies_beat_random_flips():
    env = gym.make(ENV_ID, goal="targeted", target_class=3, num_targets=2, budget=0.004, **FAST)
    core = env.unwrapped.core
    _, info = env.reset(seed=0)
    assert info["target_label"] == 3 and info["targeted_success"] == 0.0
    assert (core.y_test[core.targets[0]] != 3).all()
    obs = env.reset(seed=0)[0]
    np.testing.assert_allclose(obs[core.obs_slices["targets"]], core.x_test[core.targets[0]].ravel())
    kwargs = {"goal": "targeted", "num_targets": 1, "budget": 0.03}  # 43 points, target class drawn per episode
    copy = evaluate(ENV_ID, make_baseline("target_copy", ENV_ID), episodes=4, seed=0, env_kwargs=kwargs).summary
    flip = evaluate(ENV_ID, make_baseline("random_label_flip", ENV_ID, seed=0), episodes=4, seed=0, env_kwargs=kwargs).summary
    assert copy["targeted_success"] >= 0.75 and flip["targeted_success"] <= 0.25
    assert "success_rate" in copy


def test_target_copy_needs_targeted_goal():
    venv = gym.make_vec(ENV_ID, num_envs=2, budget=0.004, **FAST)
    with pytest.raises(ValueError, match="targeted"):
        make_baseline("target_copy", ENV_ID).setup(venv)

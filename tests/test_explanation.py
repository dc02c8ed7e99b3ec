"""Explanation-v0: the deletion/sufficiency mechanics, the replacement values, batching, bad input."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import deploy_envs  # noqa: F401
from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.explanation.baselines import AttributionExplainer
from deploy_envs.topics.explanation.attribution import attribute, randomize_model
from deploy_envs.topics.explanation.features import scores_from_ranking

ENV_ID = "deploy_envs/Explanation-v0"


def run_episode(env, action_fn):
    obs, info = env.reset(seed=3)
    rewards, infos = [], [info]
    while True:
        obs, r, term, trunc, info = env.step(action_fn(obs))
        rewards.append(r)
        infos.append(info)
        if term or trunc:
            return np.array(rewards), infos, obs


def test_deletion_return_is_original_confidence_minus_auc():
    env = gym.make(ENV_ID, features_per_step=4)
    core = env.unwrapped.core
    assert core.num_features == 64 and core.max_steps == 16
    rng = np.random.default_rng(0)
    rewards, infos, obs = run_episode(env, lambda o: rng.uniform(-1, 1, 64).astype(np.float32))
    last = infos[-1]
    assert len(rewards) == 16
    assert last["features_used"] == 64 and last["fraction_used"] == 1.0
    assert np.isclose(rewards.sum(), last["original_confidence"] - last["auc"], atol=1e-6)
    curve = last["confidence_curve"]
    assert curve.shape == (17,) and np.isclose(curve[0], last["original_confidence"], atol=1e-6)
    # the curve's trapezoid is the reported AUC
    assert np.isclose(np.trapezoid(curve, np.linspace(0, 1, 17)), last["auc"], atol=1e-5)
    # all pixels deleted (zero replacement): the victim sees a black image
    assert np.all(obs[core.obs_slices["current"]] == 0.0)
    # mid-episode the curve is padded with -1 for the steps not taken yet
    assert np.all(infos[3]["confidence_curve"][4:] == -1.0) and np.all(infos[3]["confidence_curve"][:4] >= 0)


def test_top_k_of_remaining_features_with_ties_to_lower_index():
    env = gym.make(ENV_ID, features_per_step=3)
    core = env.unwrapped.core
    env.reset(seed=0)
    scores = np.zeros(64, np.float32)
    scores[[10, 20, 30, 40]] = [0.9, 0.8, 0.7, 0.6]
    obs, *_ = env.step(scores)
    taken = np.flatnonzero(obs[core.obs_slices["taken"]])
    assert list(taken) == [10, 20, 30]
    obs, *_ = env.step(scores)  # already-taken features are skipped; then ties (0.0) go to the lowest ids
    assert list(np.flatnonzero(obs[core.obs_slices["taken"]])) == [0, 1, 10, 20, 30, 40]


def test_scores_from_ranking_plays_the_ranking():
    env = gym.make(ENV_ID, features_per_step=1, max_fraction=0.125)  # 8 of 64 pixels
    core = env.unwrapped.core
    order = np.random.default_rng(1).permutation(64)
    action = scores_from_ranking(order)[0]
    env.reset(seed=0)
    seen = []
    for _ in range(8):
        obs, _, term, _, info = env.step(action)
        seen.append(set(np.flatnonzero(obs[core.obs_slices["taken"]])))
    assert term and info["features_used"] == 8
    got = [next(iter(b - a)) for a, b in zip([set()] + seen[:-1], seen)]
    assert got == list(order[:8])


@pytest.mark.parametrize("replacement", ["zero", "mean", "blur"])
def test_replacement_values(replacement):
    env = gym.make(ENV_ID, replacement=replacement, features_per_step=64)
    core = env.unwrapped.core
    obs, _ = env.reset(seed=5)
    x0 = obs[core.obs_slices["input"]]
    obs, *_ = env.step(np.zeros(64, np.float32))
    cur = obs[core.obs_slices["current"]]
    if replacement == "zero":
        want = np.zeros(64)
    elif replacement == "mean":
        want = core.victim.dataset.x_train.reshape(-1, 64).mean(0)
    else:
        want = np.clip(gaussian_filter(x0.reshape(8, 8), 1.0, mode="nearest"), 0, 1).reshape(-1)
    assert np.allclose(cur, want, atol=1e-5)
    assert not np.allclose(cur, x0)


def test_patch_features_remove_whole_patches():
    env = gym.make(ENV_ID, patch_size=2, features_per_step=1)
    core = env.unwrapped.core
    assert env.action_space.shape == (16,) and core.max_steps == 16
    obs, _ = env.reset(seed=0)
    x0 = obs[core.obs_slices["input"]].reshape(8, 8)
    scores = np.full(16, -1.0, np.float32)
    scores[5] = 1.0  # patch row 1, col 1: pixels rows 2-3, cols 2-3
    obs, *_ = env.step(scores)
    cur = obs[core.obs_slices["current"]].reshape(8, 8)
    assert np.all(cur[2:4, 2:4] == 0.0)
    mask = np.ones((8, 8), bool)
    mask[2:4, 2:4] = False
    assert np.array_equal(cur[mask], x0[mask])


def test_sufficiency_starts_replaced_and_stops_when_sufficient():
    env = gym.make_vec(ENV_ID, num_envs=16, mode="sufficiency", features_per_step=4)
    core = env.unwrapped.core
    agent = make_baseline("integrated_gradients", ENV_ID)
    agent.setup(env)
    obs, _ = env.reset(seed=0)
    assert np.all(obs[:, core.obs_slices["current"]] == 0.0)  # nothing revealed yet
    ret = np.zeros(16)
    done = np.zeros(16, bool)
    start = np.ones(16, bool)
    final = {}
    for _ in range(core.max_steps):
        obs, r, term, _, info = env.step(agent.act(obs, start))
        start[:] = False
        ret += np.where(done, 0.0, r)
        for i in np.flatnonzero(term & ~done):
            final[i] = {k: info[k][i] for k in ("auc", "success", "features_used", "confidence", "original_confidence", "prediction_kept")}
        done |= term
        if done.all():
            break
    assert done.all()
    used = np.array([final[i]["features_used"] for i in range(16)])
    assert np.mean([final[i]["success"] for i in range(16)]) >= 0.9
    assert used.mean() < 24  # IG needs a small fraction of the 64 pixels
    for i in range(16):
        f = final[i]
        assert np.isclose(ret[i], f["auc"], atol=1e-6)
        if f["success"]:
            assert f["prediction_kept"] and f["confidence"] >= 0.9 * f["original_confidence"]


def test_all_copies_query_the_victim_in_one_forward_pass():
    env = gym.make_vec(ENV_ID, num_envs=8, features_per_step=8)
    model = env.unwrapped.core.victim.model
    calls = []
    hook = model.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    env.reset(seed=0)
    assert calls == [8]
    calls.clear()
    for _ in range(3):
        env.step(env.action_space.sample())
    hook.remove()
    assert calls == [8, 8, 8]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"features_per_step": 0}, "features_per_step"),
        ({"features_per_step": 65}, "features_per_step"),
        ({"patch_size": 2, "features_per_step": 17}, "features_per_step"),
        ({"patch_size": 3}, "patch_size"),
        ({"patch_size": 16}, "patch_size"),
        ({"replacement": "noise"}, "replacement"),
        ({"mode": "insertion"}, "mode"),
        ({"max_fraction": 0.0}, "max_fraction"),
        ({"sufficiency_threshold": 1.5}, "sufficiency_threshold"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_bad_explainer_arguments_name_the_argument():
    with pytest.raises(ValueError, match="method"):
        AttributionExplainer("lime")
    with pytest.raises(ValueError, match="model"):
        make_baseline("occlusion", ENV_ID, model="untrained")
    env = gym.make(ENV_ID)
    core = env.unwrapped.core
    x = core._flat_images[:2]
    with pytest.raises(ValueError, match="method"):
        attribute(core.victim.model, x, np.zeros(2, int), "gradcam", image_shape=core.image_shape)
    with pytest.raises(ValueError, match="mode"):
        randomize_model(core.victim.model, "partial")
    with pytest.raises(ValueError, match="layers"):
        randomize_model(core.victim.model, "cascading", layers=99)
    with pytest.raises(ValueError, match="not an deploy_envs/Explanation-v0 env"):
        make_baseline("saliency", ENV_ID).setup(gym.make_vec("deploy_envs/Evasion-v0", num_envs=2))


def test_randomize_model_changes_only_the_top_layers():
    env = gym.make(ENV_ID)
    model = env.unwrapped.core.victim.model
    top1 = randomize_model(model, "cascading", layers=1, seed=0)
    full = randomize_model(model, "full", seed=0)
    p = dict(model.named_parameters())
    p1 = dict(top1.named_parameters())
    pf = dict(full.named_parameters())
    assert not np.allclose(p["head.3.weight"].numpy(), p1["head.3.weight"].numpy())
    assert np.allclose(p["features.0.weight"].numpy(), p1["features.0.weight"].numpy())
    assert all(not np.allclose(p[k].numpy(), pf[k].numpy()) for k in p if k.endswith("weight"))
    assert np.allclose(p["head.3.weight"].numpy(), dict(model.named_parameters())["head.3.weight"].numpy())  # original untouched


def test_attribution_orders_beat_random_order_on_a_small_batch():
    from deploy_envs.evaluation import evaluate

    aucs = {name: evaluate(ENV_ID, make_baseline(name, ENV_ID), episodes=24, seed=1).summary["auc"]
            for name in ("random_order", "occlusion", "saliency")}
    assert aucs["occlusion"] < aucs["random_order"] - 0.2
    assert aucs["saliency"] < aucs["random_order"]


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "sufficiency", "features_per_step": 8}, {"patch_size": 4, "features_per_step": 1, "replacement": "blur"}],
)
def test_other_settings_single_and_vector_agree(kwargs):
    from deploy_envs.testing import check_determinism, check_single_vector_match

    check_single_vector_match(ENV_ID, kwargs, num_envs=3, steps=12)
    check_determinism(ENV_ID, kwargs, steps=12)


def test_deletion_curve_plot_is_written(tmp_path):
    from deploy_envs.topics.explanation.sanity import (
        deletion_curves,
        plot_deletion_curves,
    )

    curves = deletion_curves(["random_order", "occlusion"], episodes=8, env_kwargs={"features_per_step": 16})
    assert curves["occlusion"].shape == (5,) and curves["occlusion"][1:].mean() < curves["random_order"][1:].mean()
    path = plot_deletion_curves(tmp_path / "d.png", agents=["random_order"], episodes=4)
    assert path.exists() and path.stat().st_size > 1000

"""Tests of ``deploy_envs/Backdoor-v0``: arguments, triggers, batched victims, spectral signatures, the BadNets result."""
from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy_envs.topics.backdoor import triggers
from deploy_envs.topics.backdoor.detectors import detect, spectral_scores
from deploy_envs.topics.backdoor.mlp import BatchedMLP
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.scenarios import shipped_scenarios_dir

ENV_ID = "deploy_envs/Backdoor-v0"
FAST = {"hidden_sizes": [16], "train_steps": 5}
SCN = shipped_scenarios_dir() / "backdoor_badnets.yaml"
SCN_AC = shipped_scenarios_dir() / "backdoor_activation_clustering.yaml"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"budget": 0.0}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": -0.1}, "budget"),
        ({"patch_size": 9}, "patch_size"),  # digits are 8x8
        ({"patch_size": 0}, "patch_size"),
        ({"target_class": 10}, "target_class"),
        ({"target_class": -1}, "target_class"),
        ({"trigger": "warp"}, "trigger"),
        ({"position": "centre"}, "position"),
        ({"detector": "kmeans"}, "detector"),
        ({"ac_size_threshold": 0.6}, "ac_size_threshold"),
        ({"ac_size_threshold": 0.0}, "ac_size_threshold"),
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"hidden_sizes": [0]}, "hidden_sizes"),
        ({"max_blend_alpha": 0.0}, "max_blend_alpha"),
        ({"detection_penalty": -1.0}, "detection_penalty"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_patch_is_stamped_where_asked_and_blends_are_convex():
    pattern = np.full((2, 3, 3), 0.75, np.float32)
    mask = np.ones((2, 3, 3), np.float32)
    mask[1] = 0.5
    pat, m = triggers.patch_to_full(pattern, mask, np.array([5, 0]), np.array([5, 2]), (8, 8))
    assert m[0, 5:, 5:].min() == 1.0 and m[0].sum() == 9 and m[1, 0:3, 2:5].min() == 0.5 and m[1].sum() == 4.5
    x = np.zeros((3, 1, 8, 8), np.float32)
    out = triggers.apply(x, pat, m, shared=True)
    assert out.shape == (2, 3, 1, 8, 8)
    assert np.allclose(out[0, :, 0, 5:, 5:], 0.75) and np.allclose(out[1, :, 0, 0:3, 2:5], 0.375)
    assert out[0, :, 0, :5].sum() == 0  # untouched outside the patch
    with pytest.raises(ValueError, match="inside"):
        triggers.patch_to_full(pattern, mask, np.array([6, 0]), np.array([0, 0]), (8, 8))
    bp, bm = triggers.blend_to_full(np.ones((1, 8, 8)), np.array([0.2]))
    assert np.allclose(triggers.apply(np.full((1, 1, 1, 8, 8), 0.5), bp, bm), 0.6)


@pytest.mark.parametrize("kwargs", [{"position": "free"}, {"position": "top_left"}, {"trigger": "blend"}])
def test_encode_decode_round_trip(kwargs):
    core = gym.make(ENV_ID, **FAST, **kwargs).unwrapped.core
    rng = np.random.default_rng(0)
    if core.trigger == "patch":
        p = core.patch_size
        pattern, mask = rng.random((4, p, p)), rng.random((4, p, p))
        rows, cols = rng.integers(0, 8 - p + 1, 4), rng.integers(0, 8 - p + 1, 4)
        a = core.encode(pattern, mask, np.full(4, 0.5), rows=rows, cols=cols)
        if core.position == "top_left":
            rows, cols = np.zeros(4, int), np.zeros(4, int)
        want_p, want_m = triggers.patch_to_full(pattern, mask, rows, cols, (8, 8))
    else:
        pattern, alpha = rng.random((4, 8, 8)), np.array([0.0, 0.05, 0.1, 0.2])
        a = core.encode(pattern, alpha, np.full(4, 0.5))
        want_p, want_m = triggers.blend_to_full(pattern, alpha)
    assert core.single_action_space.contains(a[0])
    got_p, got_m, frac = core.decode(a)
    assert np.allclose(got_m, want_m, atol=1e-6) and np.allclose(got_p * (got_m > 0), want_p * (want_m > 0), atol=1e-6)
    assert np.allclose(frac, 0.5)


def test_batched_victims_train_each_copy_on_its_own_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 60, 5, generator=g)
    y = torch.randint(0, 3, (3, 60), generator=g)
    mlp = BatchedMLP(5, (8,), 3, steps=20, lr=0.05)
    together = mlp.train(x, y)
    for b in range(3):
        alone = mlp.train(x[b : b + 1], y[b : b + 1])
        for pt, pa in zip(together, alone):
            assert torch.allclose(pt[b], pa[0], atol=1e-6)
    # and training did something: the loss dropped below that of the initial parameters
    init_logits = mlp.forward(mlp.fresh(3), x)[1]
    logits = mlp.forward(together, x)[1]
    ce = torch.nn.functional.cross_entropy
    assert ce(logits.reshape(-1, 3), y.reshape(-1)) < ce(init_logits.reshape(-1, 3), y.reshape(-1)) - 0.05


def test_spectral_signatures_flag_points_shifted_along_one_direction():
    g = torch.Generator().manual_seed(1)
    reps = torch.randn(2, 400, 6, generator=g)
    labels = torch.zeros(2, 400, dtype=torch.long)
    labels[:, 200:] = 1
    reps[:, :20, 0] += 6.0  # 20 "poisoned" points of class 0, separated along one direction
    flagged = detect("spectral", reps, labels, 2, eps_points=20)
    assert flagged[:, :20].all()
    assert flagged.sum(1).tolist() == [60, 60]  # 1.5 * 20 in each class
    scores = spectral_scores(reps, labels, 2)
    assert scores[:, :20].min() > scores[:, 20:200].median()
    assert not detect("none", reps, labels, 2, eps_points=20).any()


def test_episode_poisons_the_requested_share_of_the_budget_and_ends():
    env = gym.make(ENV_ID, budget=0.02, **FAST)
    core = env.unwrapped.core
    obs, info = env.reset(seed=0)
    assert info["target_label"] == 0 and obs[core.obs_slices["target_class"]][0] == 1.0
    assert np.isclose(obs[core.obs_slices["budget"]][0], 0.02)
    assert core.budget_points == 29 and set(core.y_train[core.order[0]]) <= set(range(1, 10))
    p = core.patch_size
    a = core.encode(np.ones((1, p, p)), np.ones((1, p, p)), np.array([0.5]), rows=[5], cols=[5])[0]
    obs, reward, term, trunc, info = env.step(a)
    assert term and not trunc and info["poisoned_points"] == 14
    assert np.isclose(reward, info["attack_success_rate"] - max(0.0, info["clean_accuracy_drop"]) - info["flagged_fraction"])
    env.reset(seed=0)
    _, _, _, _, info = env.step(core.encode(np.ones((1, p, p)), np.ones((1, p, p)), np.array([0.0]), rows=[5], cols=[5])[0])
    assert info["poisoned_points"] == 0 and info["flagged_fraction"] == 0.0


def test_random_target_class_is_drawn_per_episode():
    env = gym.make(ENV_ID, target_class=None, **FAST)
    targets = {int(env.reset(seed=s)[1]["target_label"]) for s in range(12)}
    assert len(targets) >= 4


def test_badnets_backdoors_the_victim_and_spectral_signatures_catch_it():
    """Gu et al. 2017 / Tran et al. 2018 on digits (scenario backdoor_badnets.yaml)."""
    r = run_scenario(load_scenario(SCN), episodes=6, train="never")
    assert r.checks, "no expectation was checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    # measured (16 episodes): ASR 0.979, clean-accuracy drop -0.004, 97% of the poison flagged,
    # 43% of the clean points flagged (1.5 * 43 per class); random patch: ASR 0.905, 63% flagged
    assert r.lookup("badnets", {}, "attack_success_rate") >= 0.93
    assert r.lookup("badnets", {}, "flagged_fraction") >= 0.85
    assert r.lookup("badnets", {}, "clean_flagged_fraction") <= 0.5
    assert r.lookup("badnets", {}, "poisoned_points") == 43


def test_two_means_matches_sklearn_kmeans():
    """The batched Lloyd 2-means used by activation clustering agrees with scikit-learn's KMeans (up to label swap)."""
    from sklearn.cluster import KMeans

    from deploy_envs.topics.backdoor.detectors import two_means

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (2, 150, 4)), rng.normal(0, 1, (2, 50, 4)) + [5.0, 1.0, 0.0, 0.0]], 1)
    z = z - z.mean(1, keepdims=True)
    mask = np.ones((2, 200), bool)
    mask[1, 170:] = False  # copy 1 clusters only its first 170 points
    got = two_means(torch.as_tensor(z), torch.as_tensor(mask)).numpy()
    for b in range(2):
        ref = KMeans(2, n_init=10, random_state=0).fit_predict(z[b][mask[b]]).astype(bool)
        mine = got[b][mask[b]]
        assert min((mine != ref).sum(), (mine == ref).sum()) <= 2  # the same partition, up to a point or two on the border
        assert not got[b][~mask[b]].any()


def test_activation_clustering_flags_a_small_separate_cluster_only():
    from deploy_envs.topics.backdoor.detectors import activation_clustering

    g = torch.Generator().manual_seed(1)
    reps = torch.randn(2, 400, 16, generator=g)
    labels = torch.zeros(2, 400, dtype=torch.long)
    labels[:, 200:] = 1
    reps[:, :20, 0] += 6.0  # 20 "poisoned" points of class 0 form their own cluster
    flagged = detect("activation_clustering", reps, labels, 2, eps_points=20)
    assert flagged[:, :20].all() and flagged[:, 20:].sum() <= 4  # class 1 (one blob) splits into two large halves: none flagged
    assert not flagged[:, 200:].any()
    # a threshold below the poison's share (20 / 200 = 0.1) flags nothing
    assert not activation_clustering(reps, labels, 2, size_threshold=0.05).any()


def test_activation_clustering_catches_badnets_with_few_false_alarms():
    """Chen et al. 2018 on digits (scenario backdoor_activation_clustering.yaml): the poison is class 0's small cluster."""
    r = run_scenario(load_scenario(SCN_AC), episodes=4, train="never")
    assert r.checks, "no expectation was checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    # measured (8 copies, seed 0): 99.4% of the 43 poisoned points flagged, 6.8% of the clean points
    assert r.lookup("badnets", {}, "flagged_fraction") >= 0.9
    assert r.lookup("badnets", {}, "clean_flagged_fraction") <= 0.15
    assert r.lookup("badnets", {}, "poisoned_points") == 43

"""TrojanDetection-v0: the population and its manifest, the env's mechanics, rewards, info, arguments, baselines."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.trojans.baselines import anomaly_index
from deploy_envs.topics.backdoor import triggers
from deploy_envs.topics.trojans.trojan_detection import TrojanDetectionCore, iou
from deploy_envs.topics.trojans.population import (
    POPULATION_DIR,
    build,
    load_images,
    load_population,
    make_recipes,
    sha256,
    trigger_of,
)
from deploy_envs.evaluation import evaluate

ENV_ID = "deploy_envs/TrojanDetection-v0"


# ---------------------------------------------------------------- population
def test_shipped_population_is_small_verified_and_mixed():
    size = sum(p.stat().st_size for p in POPULATION_DIR.iterdir())
    assert size < 3_000_000
    pop = load_population()
    man = json.loads((POPULATION_DIR / "manifest.json").read_text())
    assert len(pop) == len(man["models"]) >= 40
    assert set(pop.kinds) == {"clean", "patch", "blend"}
    assert 0.3 <= pop.trojaned.mean() <= 0.7
    for b, m in enumerate(man["models"]):
        for key in ("kind", "seed", "label", "target", "trigger_mask_sha256", "clean_accuracy", "attack_success", "weights_sha256"):
            assert key in m, key
        assert m["clean_accuracy"] >= 0.9
        if m["label"] == "trojaned":
            assert 0 <= m["target"] < 10 and pop.masks[b].sum() > 0
        else:
            assert m["target"] == -1 and pop.masks[b].sum() == 0
    # triggers regenerate from the recipes: same masks, same hashes
    for m in man["models"]:
        _, mask = trigger_of(m)
        assert sha256(mask.astype(np.float16)) == m["trigger_mask_sha256"]
    assert [r["kind"] for r in make_recipes(man["config"])] == [m["kind"] for m in man["models"]]


def test_manifest_metrics_match_the_stored_weights():
    pop = load_population()
    assert pop.masks.shape[1:] == (16, 16) and pop.params[0].shape[1:] == (256, 64)  # digits upsampled to 16x16
    _, _, x, y = load_images(16)
    with torch.no_grad():
        pred = pop.logits(np.arange(len(pop)), torch.from_numpy(x.reshape(len(y), -1))).argmax(-1).numpy()
    acc = (pred == y).mean(1)
    man = pop.manifest["models"]
    assert np.allclose(acc, [m["clean_accuracy"] for m in man], atol=1e-3)
    b = int(np.flatnonzero(pop.trojaned)[0])
    stamped = triggers.apply(x[:, None], pop.patterns[b:b + 1], pop.masks[b:b + 1], shared=True).reshape(1, len(y), -1)
    with torch.no_grad():
        tpred = pop.logits(np.array([b]), torch.from_numpy(stamped)).argmax(-1).numpy()[0]
    keep = y != pop.targets[b]
    assert abs((tpred[keep] == pop.targets[b]).mean() - man[b]["attack_success"]) < 1e-3


def test_tampered_population_is_refused(tmp_path):
    import shutil

    for f in POPULATION_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    man = json.loads((tmp_path / "manifest.json").read_text())
    man["models"][0]["weights_sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match="sha256"):
        load_population(tmp_path)
    with pytest.raises(ValueError, match="population"):
        load_population(tmp_path / "missing")


def test_images_are_the_digits_upsampled():
    x16, y16, t16, _ = load_images(16)
    x8, y8, t8, _ = load_images(8)
    assert x16.shape == (len(x8), 16, 16) and t16.shape == (len(t8), 16, 16) and (y16 == y8).all()
    assert x16.dtype == np.float32 and x16.min() >= 0.0 and x16.max() <= 1.0
    # 2x2 average pooling of the bilinear upsampling is close to the 8x8 image (mean pixel 0.31; measured 0.07)
    assert np.abs(x16.reshape(-1, 8, 2, 8, 2).mean((2, 4)) - x8).mean() < 0.1
    with pytest.raises(ValueError, match="size"):
        load_images(4)


def test_small_population_builds_reproducibly():
    cfg = {"n_clean": 1, "n_patch": 2, "n_blend": 1, "steps": 20}
    a1, m1 = build(cfg)
    a2, m2 = build(cfg)
    assert [m["weights_sha256"] for m in m1["models"]] == [m["weights_sha256"] for m in m2["models"]]
    assert [m["kind"] for m in m1["models"]].count("patch") == 2
    assert a1["p0"].dtype == np.float16
    with pytest.raises(ValueError, match="n_patch"):
        build({"n_patch": -1})


# ---------------------------------------------------------------- the env
def make_core(n=4, **kw):
    return TrojanDetectionCore(num_envs=n, **{"probe_size": 16, **kw})


def test_true_trigger_probe_flips_to_target_and_declaration_scores():
    core = make_core(n=2, max_queries=3, query_cost=0.05)
    pop = core.pop
    tro = int(np.flatnonzero(pop.kinds == "patch")[0])
    clean = int(np.flatnonzero(~pop.trojaned)[0])
    for i in range(2):
        core.rngs[i] = np.random.default_rng(i)
    obs, info = core.reset_indices(np.arange(2), {"model": [tro, clean]})
    assert (info["trojaned"] == -1).all() and (info["true_target"] == -1).all()
    s = core.obs_slices
    assert np.allclose(obs[:, s["clean_scores"]].sum(1), 1.0, atol=1e-5) and (obs[:, s["flip_rate"]] == 0).all()
    # probe copy 0 with its own true trigger: most inputs flip to the target
    mask, pattern = np.stack([pop.masks[tro]] * 2), np.stack([pop.patterns[tro]] * 2)
    a = core.encode(mask, pattern, declare=False, verdict=-1.0, target=0)
    obs, rew, term, trunc, info = core.step_indices(np.arange(2), core.validate_actions(a, 2))
    t = pop.targets[tro]
    assert obs[0, s["flip_rate"]][t] >= 0.8 and obs[0, s["flip_rate"]].argmax() == t
    assert obs[1, s["flip_rate"]].max() < obs[0, s["flip_rate"]][t]  # the clean model resists the same stamp
    assert np.allclose(rew, -0.05) and not term.any()
    assert (info["trojaned"] == -1).all() and not info["_iou"].any()
    assert np.isclose(obs[0, s["budget"]][0], 2 / 3)
    # declare: copy 0 trojaned with the right target and mask, copy 1 clean
    a = core.encode(mask, pattern, declare=True, verdict=np.array([0.7, -0.3]), target=np.array([t, 3]))
    obs, rew, term, trunc, info = core.step_indices(np.arange(2), core.validate_actions(a, 2))
    assert term.all() and not trunc.any()
    assert info["success"].all() and list(info["trojaned"]) == [1, 0] and list(info["true_target"]) == [t, -1]
    assert info["iou"][0] == 1.0 and info["target_correct"][0] and info["_iou"].tolist() == [True, False]
    assert np.allclose(rew, [3.0, 1.0])  # verdict + target + IoU; verdict only
    assert info["queries"].tolist() == [1, 1] and np.allclose(info["score"], [0.7, -0.3])
    # a wrong verdict earns nothing
    core.reset_indices(np.arange(2), {"model": [tro, clean]})
    a = core.encode(mask, pattern, declare=True, verdict=np.array([-0.5, 0.5]), target=0)
    _, rew, _, _, info = core.step_indices(np.arange(2), core.validate_actions(a, 2))
    assert np.allclose(rew, 0.0) and not info["success"].any()


def test_resets_read_the_models_clean_answers_computed_once():
    """A reset takes its model's answers to the clean probes from the table built at construction; the
    table holds what each model answers when run alone (batch 1), and the flip rates counted from it
    are the share of each class's non-members that a probe moved into it."""
    core = make_core(n=3, max_queries=4)
    for m in core.candidates[:6]:
        pred, scores = core._query(np.array([m]), core.probe_x)
        assert np.array_equal(core.clean_probe_pred[m], pred[0])
        np.testing.assert_allclose(core.clean_probe_scores[m], scores[0], rtol=0, atol=1e-6)
    models = core.candidates[[0, 1, 2]]
    obs, _ = core.reset_indices(np.arange(3), {"model": models})
    s = core.obs_slices
    np.testing.assert_array_equal(obs[:, s["clean_scores"]], core.clean_probe_scores[models])
    # a random probe: flip rate to class c = #(probes now c that were not c) / #(probes not c before)
    rng = np.random.default_rng(1)
    a = core.encode(rng.random((3, core.resolution, core.resolution)), rng.random((3, core.resolution, core.resolution)))
    obs, *_ = core.step_indices(np.arange(3), core.validate_actions(a, 3))
    dec = core.decode(a)
    pred, _ = core._query(models, core.stamp(dec["mask"].copy(), dec["pattern"].copy()))
    clean = core.clean_probe_pred[models]
    for b in range(3):
        for c in range(core.K):
            not_c = clean[b] != c
            expect = (pred[b][not_c] == c).sum() / max(not_c.sum(), 1)
            assert np.isclose(obs[b, s["flip_rate"]][c], expect), (b, c)


def test_budget_forces_declaration_and_render():
    env = gym.make(ENV_ID, max_queries=2, probe_size=8, render_mode="ansi")
    env.reset(seed=0)
    core = env.unwrapped.core
    assert core.resolution == 16  # default: the image side
    a = core.encode(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), declare=False, verdict=0.5, target=2)[0]
    _, _, term, _, info = env.step(a)
    assert not term and info["queries"] == 1 and info["verdict"] == -1
    _, _, term, _, info = env.step(a)
    assert term and info["queries"] == 2 and info["verdict"] == 1 and info["declared_target"] == 2
    assert "declared TROJANED" in env.render()


def test_low_resolution_actions_upsample():
    core = make_core(n=1, resolution=2)
    assert core.single_action_space.shape == (2 * 4 + 2 + 10,)
    d = core.decode(core.encode(np.array([[[1, 0], [0, 0]]]), np.ones((1, 2, 2)), declare=True))
    assert d["mask"].shape == (1, 16, 16) and d["mask"][0, :8, :8].all() and d["mask"][0, 8:, :].sum() == 0


def test_iou_and_bad_mask_shapes():
    a = np.zeros((1, 8, 8)); a[0, :2, :2] = 1
    b = np.zeros((1, 8, 8)); b[0, :2, :4] = 1
    assert iou(a, b)[0] == 0.5 and iou(a, a)[0] == 1.0 and iou(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))[0] == 0.0
    with pytest.raises(ValueError, match="mask"):
        iou(np.zeros((1, 4, 4)), b)
    core = make_core(n=1)
    with pytest.raises(ValueError, match="mask"):
        core.encode(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="pattern"):
        core.encode(np.zeros((1, 16, 16)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="target"):
        core.encode(np.zeros((1, 16, 16)), np.zeros((1, 16, 16)), target=10)
    env = gym.make(ENV_ID, probe_size=8)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(64, np.float32))  # a bare mask is not an action


@pytest.mark.parametrize("kwargs, name", [
    ({"kinds": "trojan"}, "kinds"), ({"trojan_fraction": 1.5}, "trojan_fraction"), ({"probe_size": 0}, "probe_size"),
    ({"resolution": 3}, "resolution"), ({"max_queries": 0}, "max_queries"), ({"query_cost": -1}, "query_cost"),
    ({"models": [999]}, "models"), ({"models": []}, "models"), ({"white_box": "yes"}, "white_box"),
    ({"population": "/nonexistent"}, "population"), ({"iou_reward": -1}, "iou_reward"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV_ID, **kwargs)


def test_draws_respect_kinds_models_and_fraction():
    core = make_core(n=64, kinds="patch", trojan_fraction=0.5)
    for i in range(64):
        core.rngs[i] = np.random.default_rng(100 + i)
    core.reset_indices(np.arange(64))
    kinds = core.pop.kinds[core.model]
    assert "blend" not in kinds and 15 < (kinds == "patch").sum() < 49
    only = make_core(n=8, models=[0, 1, 2, 3, 4, 5], trojan_fraction=None)
    only.reset_indices(np.arange(8))
    assert set(only.model) <= {0, 1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="model"):
        only.reset_indices(np.arange(8), {"model": 7})


def test_white_box_access_is_gated():
    core = make_core(n=2)
    core.reset_indices(np.arange(2))
    with pytest.raises(ValueError, match="white_box"):
        core.model_params(np.arange(2))
    wb = make_core(n=2, white_box=True)
    wb.reset_indices(np.arange(2), {"model": [3, 5]})
    p = wb.model_params(np.arange(2))
    assert torch.equal(p[0][1], wb.pop.params[0][5])
    env = gym.make_vec(ENV_ID, num_envs=2, probe_size=8)
    with pytest.raises(ValueError, match="white_box"):
        make_baseline("neural_cleanse", ENV_ID).setup(env)


# ---------------------------------------------------------------- baselines
def test_anomaly_index():
    norms = np.array([[10, 11, 9, 10, 12, 10, 9, 11, 10, 2.0], [10, 11, 9, 10, 12, 10, 9, 11, 10, 9.0]])
    ai = anomaly_index(norms)
    assert ai[0] > 5 and ai[1] < 2
    with pytest.raises(ValueError, match="norms"):
        anomaly_index(np.ones(10))


def test_random_prober_spends_its_budget_and_declares():
    card = evaluate(ENV_ID, make_baseline("random_prober", ENV_ID, seed=0), episodes=8, seed=0, env_kwargs={"max_queries": 4, "probe_size": 16})
    s = card.summary
    assert s["queries"] == 4 and s["length"] == 4
    assert 0.0 <= s["success_rate"] <= 1.0 and s["trojaned"] in np.arange(9) / 8

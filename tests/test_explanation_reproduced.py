"""Explanation-v0's reproduced results: the deletion metric (Petsiuk et al. 2018) and the
model-parameter randomization test (Adebayo et al. 2018), on fewer inputs than the scenarios."""
from __future__ import annotations


import pytest

from deploy_envs.topics.explanation.attribution import METHODS
from deploy_envs.topics.explanation.sanity import (
    randomization_markdown,
    randomization_test,
)
from deploy_envs.scenarios import shipped_scenarios_dir
from deploy_envs.testing import check_scenario

SCN = shipped_scenarios_dir()


def run(name, episodes, agents=None):
    """The scenario on shipped agents; its checks must pass (``deploy_envs.testing.check_scenario``)."""
    return check_scenario(name, episodes=episodes, agents=agents)


def test_integrated_gradients_and_occlusion_beat_random_order_on_deletion_auc():
    r = run("explanation_deletion.yaml", episodes=48,
            agents=["random_order", "saliency", "integrated_gradients", "occlusion", "shap", "ppo"])
    auc = {a: r.lookup(a, {}, "auc") for a in ("random_order", "saliency", "integrated_gradients", "occlusion", "shap", "ppo")}
    # measured on 200 inputs: random 0.54, saliency 0.26, IG / occlusion / shap 0.06-0.07, ppo 0.21
    assert auc["random_order"] >= 0.4
    for m in ("integrated_gradients", "occlusion", "shap"):
        assert auc[m] <= 0.15, auc
    assert auc["saliency"] <= 0.4
    # the shipped PPO explainer (agents/explanation-ppo) beats the random order but not IG
    assert auc["ppo"] < auc["random_order"] - 0.15
    assert auc["integrated_gradients"] < auc["ppo"]


def test_orders_from_a_randomized_model_lose_their_faithfulness():
    r = run("explanation_sanity.yaml", episodes=32)
    for m in ("saliency", "integrated_gradients", "occlusion", "shap"):
        assert r.lookup(f"{m}_randomized", {}, "auc") >= 0.3  # measured 0.45-0.51 on 200 inputs


def test_attributions_of_trained_and_randomized_models_differ_per_method():
    res = randomization_test(METHODS, n_inputs=16, shap_samples=4, ig_steps=16, seed=1)
    table = randomization_markdown(res)
    assert all(m in table for m in METHODS)
    for m, r in res["methods"].items():
        full = r["full"]
        # measured (64 inputs): signed 0.04-0.09; abs 0.07 (saliency) / ~0.90 (the rest), whose
        # |maps| share the zero pattern of the input; on the changed pixels ~0.35
        assert full["signed"] < 0.4, (m, full)
        assert full["abs"] < 0.97, (m, full)
        assert full["abs_changed"] < 0.7, (m, full)
        assert len(r["cascading"]) == len(res["layers"]) == 4
    assert res["methods"]["saliency"]["full"]["abs"] < 0.5
    # cascading: randomizing only the logit layer already decorrelates the gradient
    assert res["methods"]["saliency"]["cascading"][0]["abs"] < 0.6


def test_randomization_test_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        randomization_test(["lime"], n_inputs=2)

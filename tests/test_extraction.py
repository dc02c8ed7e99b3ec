"""ModelExtraction-v0: the reproduced results, black-box discipline, arguments and the batched surrogate."""
from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy_envs.core.agents import make_baseline
from deploy_envs.topics.extraction.surrogate import BatchedSurrogate
from deploy_envs.scenarios import shipped_scenarios_dir
from deploy_envs.testing import check_scenario

ENV = "deploy_envs/ModelExtraction-v0"
SCN = shipped_scenarios_dir()


def run(name, episodes=None):
    """The scenario on shipped agents; its checks must pass (``deploy_envs.testing.check_scenario``)."""
    return check_scenario(name, episodes=episodes)


def test_equation_solving_recovers_the_linear_victim_exactly_with_d_plus_1_probability_answers():
    r = run("extraction_equation_solving.yaml", episodes=2)
    assert r.lookup("equation_solving", {"output": "probabilities", "max_queries": "65"}, "fidelity") == 1.0
    assert r.lookup("equation_solving", {"output": "probabilities", "max_queries": "65"}, "queries") == 65
    assert r.lookup("equation_solving", {"output": "label", "max_queries": "65"}, "fidelity") < 0.4


def test_active_strategies_beat_random_and_defenses_lower_fidelity_on_the_cnn():
    r = run("extraction_cnn.yaml", episodes=4)
    assert r.lookup("uncertainty", {"defense": "none"}, "fidelity") >= 0.9
    assert r.lookup("knockoff", {"defense": "none"}, "fidelity") >= 0.85
    assert r.lookup("random", {"defense": "none"}, "fidelity") <= 0.75


def test_prada_flags_the_jacobian_attacker_and_not_natural_queries():
    r = run("extraction_prada.yaml", episodes=4)
    assert r.lookup("jacobian", {}, "flagged") == 1.0
    assert r.lookup("knockoff", {}, "flagged") == 0.0


def test_observation_and_info_hold_no_victim_internals():
    env = gym.make(ENV, batch_size=4, max_queries=8, holdout=50)
    core = env.unwrapped.core
    obs, info = env.reset(seed=0)
    assert obs.shape == (4 * 10 + 4 + 4 + 1,) and set(core.obs_slices) == {"answer", "answered", "uncertainty", "budget"}
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert set(info) == {"fidelity", "test_accuracy", "queries", "answered", "flagged"}
    assert all(np.ndim(v) == 0 for v in info.values())
    answer = obs[core.obs_slices["answer"]].reshape(4, 10)
    np.testing.assert_allclose(answer.sum(1), 1.0, atol=1e-5)  # probabilities, nothing else
    assert info["queries"] == 4 and not term
    *_, term, _, info = env.step(env.action_space.sample())
    assert term and info["queries"] == 8 and obs[core.obs_slices["budget"]][0] == pytest.approx(0.5)


def test_reward_is_the_fidelity_gain_minus_query_cost():
    env = gym.make(ENV, batch_size=5, max_queries=20, holdout=60, query_cost=0.01, fit_steps=5)
    _, info = env.reset(seed=1)
    prev = info["fidelity"]
    for _ in range(4):
        _, r, _, _, info = env.step(env.action_space.sample())
        assert r == pytest.approx(info["fidelity"] - prev - 0.05)
        prev = info["fidelity"]


def test_label_only_answers_are_one_hot_and_refusals_are_marked():
    env = gym.make(ENV, output="label", batch_size=5, max_queries=10)
    core = env.unwrapped.core
    env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    ans = obs[core.obs_slices["answer"]].reshape(5, 10)
    assert set(np.unique(ans)) == {0.0, 1.0} and (obs[core.obs_slices["answered"]] == 1).all()


@pytest.mark.parametrize(
    "kwargs,name",
    [({"fit": "equations"}, "fit"), ({"max_queries": 25, "batch_size": 10}, "max_queries"), ({"surrogate": "cnn"}, "surrogate"),
     ({"output": "logits"}, "output"), ({"defense": "watermark"}, "defense"), ({"holdout": 0}, "holdout"), ({"victim": "huge"}, "victim")],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV, **kwargs)


def test_baselines_refuse_other_envs():
    with pytest.raises(ValueError, match="does not apply"):
        make_baseline("knockoff", "deploy_envs/Evasion-v0")


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_batched_surrogate_copies_are_independent(kind):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 30, 64), dtype=np.float32))
    y = torch.softmax(torch.from_numpy(rng.normal(size=(3, 30, 10)).astype(np.float32)), -1)
    w = torch.ones(3, 30)
    w[2, 10:] = 0.0
    batch = BatchedSurrogate(kind, 64, 10, 3)
    batch.init(np.arange(3), [np.random.default_rng(i) for i in range(3)])
    batch.fit(np.arange(3), x, y, w, 15)
    for i in range(3):
        one = BatchedSurrogate(kind, 64, 10, 1)
        one.init(np.array([0]), [np.random.default_rng(i)])
        n = 10 if i == 2 else 30  # zero-weight rows change nothing
        one.fit(np.array([0]), x[i : i + 1, :n], y[i : i + 1, :n], w[i : i + 1, :n], 15)
        for k in batch.params:
            torch.testing.assert_close(batch.params[k][i], one.params[k][0], atol=1e-5, rtol=1e-4)
    # training lowers the loss
    before = BatchedSurrogate(kind, 64, 10, 3)
    before.init(np.arange(3), [np.random.default_rng(i) for i in range(3)])
    def loss(s):
        return -(y * torch.log_softmax(s.logits(None, x), -1)).sum(-1)[:2].mean()
    assert loss(batch) < loss(before)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_surrogate_closed_form_gradients_equal_autograd(kind):
    """The fit's hand-derived gradients are autograd's on the same weighted soft-label loss (some rows unused)."""
    rng = np.random.default_rng(1)
    b, n, d, K = 4, 25, 64, 10
    x = torch.from_numpy(rng.random((b, n, d), dtype=np.float32))
    y = torch.softmax(torch.from_numpy(rng.normal(size=(b, n, K)).astype(np.float32)), -1)
    w = torch.from_numpy((rng.random((b, n)) < 0.7).astype(np.float32))
    y = y * w.unsqueeze(-1)  # unused rows have no target, as in the env's query record
    s = BatchedSurrogate(kind, d, K, b)
    s.init(np.arange(b), [np.random.default_rng(i) for i in range(b)])
    if kind == "logistic":  # zero init would make the check trivial on W's sign
        s.params["W"] = torch.from_numpy(rng.normal(0, 0.3, (b, d, K)).astype(np.float32))
    p = {k: v.clone().requires_grad_(True) for k, v in s.params.items()}
    norm = w.sum(1).clamp_min(1.0)
    loss = ((-(y * torch.log_softmax(s._logits(p, x), -1)).sum(-1) * w).sum(1) / norm).sum()
    expected = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
    yt = y.transpose(1, 2)
    got = s._loss_gradients(s.params, x.transpose(1, 2), yt, yt.sum(1, keepdim=True), (w / norm[:, None]).unsqueeze(1))
    assert set(got) == set(expected)
    for k in expected:
        assert got[k].shape == expected[k].shape
        assert expected[k].abs().max() > 1e-4
        torch.testing.assert_close(got[k], expected[k], atol=1e-6, rtol=1e-4)

"""The model API: granularity, accounting, defenses, PRADA and refusal of bad queries."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from deploy_envs.api import ModelAPI, PradaDetector
from deploy_envs.data import load_dataset
from deploy_envs.models.linear_victim import LinearVictim, linear_victim


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds.x_train.reshape(len(ds.y_train), -1), ds.x_test.reshape(len(ds.y_test), -1)


def test_probabilities_are_the_victims_softmax_and_labels_its_argmax(digits):
    _, x = digits
    api = ModelAPI("standard")
    ans = api.query(x[:50], "alice")
    with torch.no_grad():
        p = torch.softmax(api.model(torch.from_numpy(x[:50]).view(-1, 1, 8, 8)), 1).numpy()
    assert ans.ok.all() and ans.error is None
    np.testing.assert_allclose(ans.outputs, p, atol=1e-6)
    assert (ans.labels == p.argmax(1)).all()
    assert ans.queries_used == 50 and api.total_queries == 50


@pytest.mark.parametrize("output", ["label", "top_k", "rounded"])
def test_output_granularity(digits, output):
    _, x = digits
    full = ModelAPI("standard").query(x[:40]).outputs
    ans = ModelAPI("standard", output=output, top_k=2, decimals=1).query(x[:40])
    if output == "label":
        assert set(np.unique(ans.outputs)) == {0.0, 1.0} and (ans.outputs.sum(1) == 1).all()
        assert (ans.outputs.argmax(1) == full.argmax(1)).all()
    elif output == "top_k":
        assert ((ans.outputs > 0).sum(1) <= 2).all() and ((ans.outputs > 0).sum(1) >= 1).all()
        top2 = np.sort(full, 1)[:, -2:]
        np.testing.assert_allclose(np.sort(ans.outputs, 1)[:, -2:], top2, atol=1e-6)
    else:
        np.testing.assert_allclose(ans.outputs * 10, np.round(ans.outputs * 10), atol=1e-4)
        assert np.abs(ans.outputs - full).max() <= 0.05 + 1e-6


def test_budget_and_client_reset(digits):
    _, x = digits
    api = ModelAPI("linear", budget=10)
    a = api.query(x[:6], "c")
    b = api.query(x[6:12], "c")
    assert a.ok.all() and b.ok.tolist() == [True] * 4 + [False] * 2
    assert "budget" in b.error and b.budget_left == 0 and (b.labels[4:] == -1).all() and (b.outputs[4:] == 0).all()
    assert api.query(x[:3], "other").ok.all()  # budgets are per client
    api.reset_client("c")
    assert api.query(x[:3], "c").ok.all()


def test_rate_limit_with_a_clock():
    now = [0.0]
    api = ModelAPI("linear", rate_limit=5, rate_window=1.0, clock=lambda: now[0])
    x = np.full((4, 64), 0.5)
    assert api.query(x, "c").ok.sum() == 4
    second = api.query(x, "c")
    assert second.ok.sum() == 1 and "rate" in second.error
    now[0] = 1.0  # a full window later the bucket is full again (capacity 5)
    assert api.query(x, "c").ok.sum() == 4


def test_out_of_domain_queries_get_error_answers_not_exceptions(digits):
    _, x = digits
    api = ModelAPI("standard")
    q = x[:4].copy()
    q[1, 3] = np.nan
    q[2, 0] = 1.5
    ans = api.query(q, "c")
    assert ans.ok.tolist() == [True, False, False, True]
    assert "NaN" in ans.errors[1] and "[0, 1]" in ans.errors[2]
    assert api.clients["c"].used == 2
    for bad in (np.zeros((2, 63)), "not a query", [[1, 2], [3]], np.zeros((0, 5))):
        r = api.query(bad, "c")
        assert not r.ok.any() and r.error
    assert api.query(x[0].reshape(1, 8, 8)).ok.all()  # an image-shaped query is fine
    assert api.query(x[:2].reshape(2, 1, 8, 8)).ok.all()


def test_answers_carry_no_weights_gradients_or_logits(digits):
    _, x = digits
    d = ModelAPI("standard").query(x[:2]).to_dict()
    assert set(d) == {"outputs", "labels", "ok", "errors", "error", "flagged", "queries_used", "budget_left"}


def test_noise_and_rounding_defenses(digits):
    _, x = digits
    clean = ModelAPI("standard").query(x[:100]).outputs
    noisy = ModelAPI("standard", defense="noise", noise_scale=0.2, seed=1).query(x[:100]).outputs
    again = ModelAPI("standard", defense="noise", noise_scale=0.2, seed=1).query(x[:100]).outputs
    np.testing.assert_array_equal(noisy, again)  # seeded per client
    np.testing.assert_allclose(noisy.sum(1), 1.0, atol=1e-5)
    assert np.abs(noisy - clean).max(1).mean() > 0.1
    rounded = ModelAPI("standard", defense="rounding", decimals=0).query(x[:100]).outputs
    assert set(np.unique(rounded)) <= {0.0, 1.0}


def test_victims_from_sklearn_and_modules(digits):
    xtr, x = digits
    ds = load_dataset("digits")
    est = LogisticRegression(max_iter=300).fit(xtr[:300], ds.y_train[:300])
    api = ModelAPI(est)
    assert (api.query(x[:30]).labels == est.predict(x[:30])).all()
    lin = linear_victim()
    assert isinstance(lin, LinearVictim) and lin.in_features == 64 and lin.num_classes == 10
    assert (ModelAPI(lin).query(x[:30]).labels == ModelAPI("linear").query(x[:30]).labels).all()
    with pytest.raises(ValueError, match="victim"):
        ModelAPI(42)
    for kwargs, name in [({"output": "logits"}, "output"), ({"defense": "dp"}, "defense"), ({"top_k": 11}, "top_k"),
                         ({"budget": 0}, "budget"), ({"prada_response": "ban"}, "prada_response")]:
        with pytest.raises(ValueError, match=name):
            ModelAPI("linear", **kwargs)


def _jacobian_like_stream(x0, rng, rounds=3):
    """Papernot-style synthetic queries: each round adds x + 0.1 * sign(direction) for every earlier point."""
    pts = list(x0)
    for _ in range(rounds):
        pts += [np.clip(p + 0.1 * np.sign(rng.normal(size=p.shape)), 0, 1) for p in list(pts)]
    return np.asarray(pts)


def test_prada_flags_synthetic_streams_not_natural_ones(digits):
    xtr, _ = digits
    rng = np.random.default_rng(0)
    api = ModelAPI("standard", defense="prada")
    natural = xtr[rng.permutation(len(xtr))[:300]]
    for k in range(0, 300, 20):
        api.query(natural[k : k + 20], "benign")
    assert not api.is_flagged("benign")
    synthetic = _jacobian_like_stream(xtr[:20], rng)  # 160 queries
    answers = [api.query(synthetic[k : k + 20], "thief") for k in range(0, len(synthetic), 20)]
    assert api.is_flagged("thief") and answers[-1].flagged
    assert not answers[-1].ok.any() and "PRADA" in answers[-1].error
    assert api.clients["thief"].detector.last_w < 0.9


def test_prada_poison_answers_look_normal_but_are_wrong(digits):
    xtr, _ = digits
    rng = np.random.default_rng(0)
    synthetic = _jacobian_like_stream(xtr[:20], rng)
    api = ModelAPI("standard", defense="prada", prada_response="poison", seed=0)
    for k in range(0, len(synthetic), 20):
        ans = api.query(synthetic[k : k + 20], "thief")
    assert ans.flagged and ans.ok.all()
    truth = ModelAPI("standard").query(synthetic[-20:]).outputs
    np.testing.assert_allclose(ans.outputs.sum(1), 1.0, atol=1e-5)
    assert (ans.labels != truth.argmax(1)).mean() > 0.5


def test_prada_detector_alone():
    det = PradaDetector(delta=0.9, min_distances=100, check_every=10)
    rng = np.random.default_rng(0)
    # i.i.d. Gaussian queries: min distances are close to normal, never flagged
    assert det.observe(rng.normal(size=(300, 16)), np.zeros(300, int)) is None and not det.flagged
    det2 = PradaDetector()
    base = rng.normal(size=(1, 16))
    stream = np.concatenate([base + 0.01 * k * np.eye(16)[k % 16] for k in range(200)])
    at = det2.observe(stream, np.zeros(200, int))
    assert det2.flagged and at is not None and at <= 200


def test_query_log_is_bounded(digits):
    _, x = digits
    api = ModelAPI("linear", log_size=3)
    for _ in range(5):
        api.query(x[:2], "c")
    assert len(api.log) == 3 and api.log[-1]["client"] == "c" and api.log[-1]["answered"] == 2

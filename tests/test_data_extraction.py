"""DataExtraction-v0: the reproduced exposure result on the shipped victims, the search baselines, the LM and DP-SGD pieces."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy_envs.core.agents import make_baseline
from deploy_envs.evaluation import evaluate
from deploy_envs.scenarios import load_scenario, run_scenario, shipped_scenarios_dir
from deploy_envs.topics.data_extraction import lm, victims
from deploy_envs.topics.data_extraction.baselines import enumerate_exposure

ENV = "deploy_envs/DataExtraction-v0"
SCN = shipped_scenarios_dir()
MAX = lm.SECRET_LENGTH * math.log2(10)


@pytest.fixture(scope="module")
def scenario_result(tmp_path_factory):
    return run_scenario(load_scenario(SCN / "data_extraction_exposure.yaml"), train="never",
                        plot_dir=tmp_path_factory.mktemp("plots"))


def test_scenario_search_extracts_x16_random_does_not_dp_back_to_none(scenario_result):
    r = scenario_result
    assert len(r.checks) == 8, "every expectation must be checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    assert r.lookup("shortest", {"victim": "x16"}, "success_rate") == 1.0
    assert r.lookup("random", {"victim": "x16"}, "success_rate") == 0.0
    # the search needs only the 6 queries of the secret's path on a well-memorized canary
    assert r.lookup("shortest", {"victim": "x16"}, "queries") <= 10


def test_scenario_writes_the_exposure_table_and_plot(scenario_result):
    png = [a for a in scenario_result.artifacts if a.endswith(".png")]
    assert png and Path(png[0]).stat().st_size > 5000
    table = json.loads(Path(png[0]).with_suffix(".json").read_text())
    rows = {r["victim"]: r for r in table["rows"]}
    means = [rows[v]["mean_exposure"] for v in ("none", "x1", "x4", "x16")]
    assert means == sorted(means) and means[-1] > means[0] + 10, means
    assert rows["dp"]["mean_exposure"] < rows["none"]["mean_exposure"] + 3
    assert rows["dp"]["mean_exposure"] < rows["x16"]["mean_exposure"] - 10
    assert rows["dp"]["epsilon"] is not None and 1.0 < rows["dp"]["epsilon"] < 10.0
    assert all(r["n"] == 4 for r in rows.values())


def test_shipped_cards_match_a_fresh_enumeration():
    """The exposures on the cards are reproduced from the shipped weights (two canaries per victim)."""
    for name in victims.VICTIMS:
        card = victims.load_card(name)
        fresh = enumerate_exposure(name, canaries=(0, 3))
        for canary, value in fresh.items():
            assert value["rank"] == card["metrics"]["exposure"][canary]["rank"], (name, canary)
        assert card["sha256"] == victims.read_manifest()["victims"][name]["sha256"]


def test_exposure_rises_with_repetitions_on_every_canary():
    ex = {v: enumerate_exposure(v) for v in ("x1", "x4", "x16")}
    for c in lm.CANARY_NAMES:
        assert ex["x1"][c]["exposure"] <= ex["x4"][c]["exposure"] <= ex["x16"][c]["exposure"], c
        assert ex["x16"][c]["exposure"] == pytest.approx(MAX)  # rank 1 of 10^6


def test_branch_and_bound_rank_equals_full_enumeration():
    model = victims.load_victim("x4")
    for canary in range(4):
        prefix, secret = lm.canary_prefix(canary), lm.canary_secrets()[canary][:4]
        full = lm.secret_logprobs(model, prefix, 4)
        assert lm.exact_rank(model, prefix, secret) == lm.rank_of(full, lm.secret_index(secret))
    # a secret the model has never seen ranks far from the top: the rank is not trivially 1
    other = np.array([0, 0, 0, 0])
    full = lm.secret_logprobs(model, lm.canary_prefix(0), 4)
    assert lm.exact_rank(model, lm.canary_prefix(0), other) == lm.rank_of(full, 0) > 10


def test_functional_gru_and_per_record_gradients_match_autograd():
    torch.manual_seed(0)
    model = lm.CharGRU(hidden=16, embed=8)
    tokens, lengths = lm.encode(lm.make_corpus(n_records=3, canaries=1, repetitions=1))
    params = {k: v.detach() for k, v in model.named_parameters()}
    with torch.no_grad():
        ref = model(tokens)[0]
    for i in range(len(tokens)):
        assert torch.allclose(lm.functional_logits(params, tokens[i]), ref[i], atol=1e-5)
    grads = lm.per_record_grads(model, tokens, lengths)
    for i in range(len(tokens)):
        model.zero_grad()
        lm._masked_loss(model(tokens[i : i + 1])[0], tokens[i : i + 1], lengths[i : i + 1]).backward()
        for k, p in model.named_parameters():
            assert torch.allclose(grads[k][i], p.grad, atol=1e-5), (i, k)


def test_dp_step_clips_each_record_and_adds_calibrated_noise():
    torch.manual_seed(0)
    model = lm.CharGRU(hidden=16, embed=8)
    tokens, lengths = lm.encode(lm.make_corpus(n_records=6, canaries=1, repetitions=1))
    recipe = lm.LMRecipe(dp=True, noise_multiplier=0.0, max_grad_norm=0.05, batch_size=4)
    lm._dp_step(model, tokens, lengths, recipe, torch.Generator().manual_seed(0))
    grads = lm.per_record_grads(model, tokens, lengths)
    norms = torch.sqrt(sum(g.reshape(len(tokens), -1).pow(2).sum(1) for g in grads.values()))
    assert (norms > 0.05).all()  # every record is clipped at this norm
    for k, p in model.named_parameters():
        want = (grads[k] * (0.05 / norms).reshape(-1, *[1] * (grads[k].dim() - 1))).sum(0) / 4
        assert torch.allclose(p.grad, want, atol=1e-6), k
    # with noise: the added noise has std noise_multiplier * clip / expected batch size
    recipe = lm.LMRecipe(dp=True, noise_multiplier=2.0, max_grad_norm=0.05, batch_size=4)
    empty = tokens[:0], lengths[:0]
    lm._dp_step(model, *empty, recipe, torch.Generator().manual_seed(1))
    noise = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert noise.std().item() == pytest.approx(2.0 * 0.05 / 4, rel=0.05)


def test_env_is_black_box_and_charges_queries_by_granularity():
    env = gym.make(ENV, victim="x16", canary=1)
    obs, info = env.reset(seed=0)
    secret = "".join(map(str, lm.canary_secrets()[1]))
    assert set(info) == {"queries", "submitted", "success", "digits_recovered", "canary"}
    obs, r, term, trunc, info = env.step(0)
    assert info["queries"] == 1 and r == pytest.approx(-0.002)
    seq = gym.make(ENV, victim="x16", canary=1, granularity="sequence", query_budget=100)
    seq.reset(seed=0)
    assert seq.step(0)[4]["queries"] == 10
    # the answer after the empty prefix puts most of the mass on the secret's first digit
    answer = obs[env.unwrapped.core.obs_slices["answer"]]
    assert int(answer.argmax()) == int(secret[0])
    for v in (obs, answer):
        assert secret not in repr(v)


def test_budget_exhaustion_submits_the_most_likely_complete_candidate():
    # 6 queries reach a complete candidate; the 7th cannot be paid, so the best complete one is submitted
    env = gym.make(ENV, victim="x16", canary=2, query_budget=6)
    env.reset(seed=0)
    for _ in range(6):
        obs, r, term, trunc, info = env.step(0)
    assert term and info["submitted"] and info["success"] and info["queries"] == 6
    assert r == pytest.approx(1.0 - 0.002)


def test_discard_removes_a_prefix_without_a_query():
    env = gym.make(ENV, victim="x4", canary=0, slots=16)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(0)
    core = env.unwrapped.core
    before = np.isfinite(core.f_lp[0]).sum()
    obs, r, term, trunc, info = env.step(16 + 3)
    assert np.isfinite(core.f_lp[0]).sum() == before - 1 and info["queries"] == 1 and r == 0.0
    assert np.all(np.diff(core.f_lp[0][np.isfinite(core.f_lp[0])]) <= 0)  # still most likely first


@pytest.mark.parametrize("kwargs, name", [({"victim": "x8"}, "victim"), ({"canary": 4}, "canary"), ({"slots": 1}, "slots"),
                                          ({"query_budget": 0}, "query_budget"), ({"granularity": "tokens"}, "granularity"),
                                          ({"capacity": 4}, "capacity")])
def test_bad_arguments_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gym.make(ENV, **kwargs)


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    shutil.copytree(victims.WEIGHTS_DIR, tmp_path / "w")
    data = bytearray((tmp_path / "w" / "x4.pt").read_bytes())
    data[-100] ^= 1
    (tmp_path / "w" / "x4.pt").write_bytes(bytes(data))
    monkeypatch.setattr(victims, "WEIGHTS_DIR", tmp_path / "w")
    monkeypatch.setattr(victims, "MANIFEST", tmp_path / "w" / "manifest.json")
    monkeypatch.setattr(victims, "_MEMORY", {})
    with pytest.raises(victims.VictimIntegrityError, match="sha256"):
        victims.load_victim("x4")


def test_random_guess_submits_uniform_secrets():
    card = evaluate(ENV, make_baseline("random_guess", ENV, seed=3), episodes=40, env_kwargs={"victim": "x16"})
    recovered = np.array([r["digits_recovered"] for r in card.records])
    assert all(r["submitted"] == 1.0 and r["queries"] == 6 for r in card.records)
    # each digit is right with probability 1/10: 0.6 expected per guess (binomial(6, 0.1))
    assert 0.2 < recovered.mean() < 1.1


def test_cached_hidden_states_give_the_answers_of_a_fresh_pass():
    from deploy_envs.topics.data_extraction.data_extraction import LanguageModelAPI

    model = victims.load_victim("x4")
    warm, rng = LanguageModelAPI(model), np.random.default_rng(0)
    hits = 0
    for _ in range(40):
        canary, digits, depth = rng.integers(4, size=8), rng.integers(2, size=(8, 6)), rng.integers(0, 6, size=8)
        before = len(warm._cache)
        got = warm.digit_logprobs(canary, digits, depth)
        hits += before + 8 > len(warm._cache)  # some prefixes were answered from the cache
        cold = LanguageModelAPI(model).digit_logprobs(canary, digits, depth)
        assert np.allclose(got, cold, atol=1e-5)
    assert hits > 10

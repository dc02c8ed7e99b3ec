"""RewardModelGaming-v0: Goodhart's law on a learned reward (Gao, Schulman, Hilton 2022, small)."""
from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

from deploy_envs.core.agents import make_baseline
from deploy_envs.evaluation import evaluate
from deploy_envs.scenarios import load_scenario, run_scenario
from deploy_envs.topics.reward_model_gaming.baselines import PPO_KL_COEFS, BestOfNPolicy, best_of_n_kl, load_ppo_policy
from deploy_envs.topics.reward_model_gaming.core import to_action
from deploy_envs.topics.reward_model_gaming.reward_model import MODELS_DIR, SHIPPED_COMPARISONS, get_reward_model, gold_reward, manifest
from deploy_envs.scenarios import shipped_scenarios_dir

ENV = "deploy_envs/RewardModelGaming-v0"


def test_gold_reward_peaks_then_falls():
    s = np.linspace(0, 4, 81)
    z = np.stack([s, np.zeros_like(s), np.zeros_like(s), np.zeros_like(s)], 1)
    g = gold_reward(z)
    assert s[g.argmax()] == pytest.approx(2.125, abs=0.05) and g[-1] < 0 < g.max()


def test_env_reports_proxy_gold_and_exact_kl():
    env = gym.make(ENV, num_candidates=8, comparisons=100)
    obs, _ = env.reset(seed=3)
    core = env.unwrapped.core
    assert obs.shape == (8 * 5,) and np.allclose(obs[32:], -np.log(8))
    logits = np.array([2.0, 0, 0, 0, 0, 0, 0, -1.0])
    _, r, term, trunc, info = env.step(to_action(logits))
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert term and not trunc
    assert info["kl"] == pytest.approx(float((p * np.log(p * 8)).sum()), rel=1e-5)
    assert info["expected_gold"] == pytest.approx(float((p * gold_reward(core.z[0])).sum()), rel=1e-5)
    assert r == pytest.approx(info["proxy"]) and info["hidden_performance"] == info["gold"]
    assert info["gold"] == pytest.approx(float(gold_reward(core.z[0][info["choice"]])))
    # the KL penalty in the env's reward
    env = gym.make(ENV, num_candidates=8, comparisons=100, kl_coef=0.5)
    env.reset(seed=3)
    _, r, *_, info = env.step(to_action(logits))
    assert r == pytest.approx(info["proxy"] - 0.5 * info["kl"])


def test_best_of_n_is_the_exact_distribution_and_matches_the_kl_formula():
    """Gao et al. 2022: KL(best-of-n || reference) = log n - (n - 1)/n for continuous responses."""
    env = gym.make_vec(ENV, num_envs=4, comparisons=100)
    obs, _ = env.reset(seed=0)
    agent = BestOfNPolicy(8)
    agent.setup(env)
    a = agent.act(obs, np.ones(4, bool))
    p = np.exp(30.0 * a.astype(np.float64))
    p /= p.sum(1, keepdims=True)
    proxy = env.unwrapped.core.proxy
    assert np.all(p[np.arange(4), proxy.argmax(1)] > 1 - (255 / 256) ** 8 - 1e-4)
    # Monte Carlo of best-of-8 on one prompt matches the exact distribution
    rng = np.random.default_rng(0)
    draws = proxy[0][rng.integers(256, size=(20_000, 8))].max(1)
    assert np.mean(draws == proxy[0].max()) == pytest.approx(p[0, proxy[0].argmax()], abs=0.01)
    s = evaluate(ENV, BestOfNPolicy(16), episodes=64, seed=0, env_kwargs={"comparisons": 100}).summary
    assert s["kl"] == pytest.approx(best_of_n_kl(16), rel=0.03)


def test_shipped_models_verify_and_bad_bytes_are_refused(tmp_path, monkeypatch):
    m = manifest()
    for c in SHIPPED_COMPARISONS:
        name = f"rm_c{c}_n0_s0.npz"
        assert hashlib.sha256((MODELS_DIR / name).read_bytes()).hexdigest() == m[name]
        for b in PPO_KL_COEFS:
            load_ppo_policy(c, b)
    assert sum((MODELS_DIR / k).stat().st_size for k in m) < 1_000_000
    import shutil

    from deploy_envs.topics.reward_model_gaming import reward_model

    bad = tmp_path / "models"
    shutil.copytree(MODELS_DIR, bad)
    blob = bytearray((bad / "rm_c100_n0_s0.npz").read_bytes())
    blob[200] ^= 0xFF
    (bad / "rm_c100_n0_s0.npz").write_bytes(bytes(blob))
    monkeypatch.setattr(reward_model, "MODELS_DIR", bad)
    reward_model.get_reward_model.cache_clear()
    try:
        with pytest.raises(ValueError, match="sha256"):
            reward_model.get_reward_model(100)
    finally:
        monkeypatch.undo()
        reward_model.get_reward_model.cache_clear()
    with pytest.raises(ValueError, match="no shipped PPO policy"):
        load_ppo_policy(100, 0.7)


@pytest.mark.parametrize("kwargs", [{"num_candidates": 1}, {"comparisons": 0}, {"label_noise": 0.5}, {"kl_coef": -1.0}, {"rm_seed": -1}])
def test_bad_arguments_name_the_argument(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        gym.make(ENV, **kwargs)


def test_more_comparisons_make_a_better_proxy_in_the_tail():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((20_000, 4))
    tail = (z[:, 0] + 0.5 * z[:, 1]) > 2.2
    corr = {c: np.corrcoef(get_reward_model(c)(z[tail]), gold_reward(z[tail]))[0, 1] for c in SHIPPED_COMPARISONS}
    assert corr[10_000] > corr[100] + 0.3, corr


def test_goodhart_scenario_holds_with_the_shipped_models(tmp_path):
    r = run_scenario(load_scenario(shipped_scenarios_dir() / "reward_model_gaming.yaml"), episodes=256, train="never", plot_dir=tmp_path)
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert r.checks and not failed, failed
    assert (tmp_path / "reward_model_gaming.png").stat().st_size > 10_000


def test_baselines_are_registered_for_the_env_only():
    assert make_baseline("best_of_n", ENV, n=4).n == 4
    with pytest.raises(ValueError, match="does not apply"):
        make_baseline("best_of_n", "deploy_envs/BoatRace-v0")
    with pytest.raises(ValueError, match="n="):
        make_baseline("best_of_n", ENV, n=0)


def test_alignment_suite_has_a_reward_gaming_row():
    from deploy_envs.suites import run_suite

    rows = run_suite("alignment", lambda e: make_baseline("best_of_n", e, n=64), episodes=32)
    (row,) = [r for r in rows if r["env_id"] == ENV]
    assert row["kl"] == pytest.approx(best_of_n_kl(64), rel=0.05) and row["reward"] > 1.0
    assert row["gap"] == pytest.approx(row["reward"] - row["hidden_performance"])
    assert all("note" in r for r in rows if r["env_id"] != ENV)  # best-of-n applies to this env only


def test_label_noise_makes_a_worse_proxy():
    from deploy_envs.topics.reward_model_gaming.reward_model import train_reward_model

    z = np.random.default_rng(2).standard_normal((5000, 4))
    clean = train_reward_model(300, 0.0, seed=1, epochs=150)
    noisy = train_reward_model(300, 0.45, seed=1, epochs=150)
    corr = lambda m: np.corrcoef(m(z), gold_reward(z))[0, 1]  # noqa: E731
    assert corr(clean) > corr(noisy) + 0.2
    with pytest.raises(ValueError, match="label_noise"):
        train_reward_model(10, 0.5)

"""Expectation over Transformation (Athalye et al. 2018) in ``Evasion-v0`` and EOT-PGD.

The scenario test runs ``scenarios/eot_transforms.yaml`` on a small set with the
shipped standard model: plain PGD's examples fool the untransformed input but not 90%
of the transformed views; EOT-PGD's do, at the same radius and query budget; the
shipped PPO attackers do too: the one trained under EOT, and the quickstart one
(trained without EOT) given the EOT feedback.
"""
from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest
import torch

import deploy_envs  # noqa: F401
from deploy_envs.core.agents import make_baseline
from deploy_envs.data import load_dataset
from deploy_envs.metrics.robustness import pgd_attack
from deploy_envs.models.zoo import load_model
from deploy_envs.scenarios import load_scenario, run_scenario, shipped_scenarios_dir
from deploy_envs.topics.evasion.eot import TransformDistribution, eot_pgd_attack, eot_success_rate

ENV = "deploy_envs/Evasion-v0"
SCN = shipped_scenarios_dir()
EOT = {"threat_model": "white_box", "epsilon": 0.2, "max_queries": 5, "transforms": "default", "eot_samples": 4}


def test_identity_distribution_leaves_images_unchanged():
    dist = TransformDistribution(rotation=0, translation=0, scale_low=1, scale_high=1, brightness=0,
                                 contrast_low=1, contrast_high=1, noise_std=0)
    x = torch.as_tensor(load_dataset("digits").x_test[:8])
    params = dist.sample(np.random.default_rng(0), 8)
    assert torch.allclose(dist.apply(x, params), x, atol=1e-5)


def test_default_distribution_changes_images_within_its_ranges():
    dist = TransformDistribution()
    x = torch.as_tensor(load_dataset("digits").x_test[:64])
    params = dist.sample(np.random.default_rng(0), 64)
    assert np.abs(np.degrees(params[:, 0])).max() <= 10 + 1e-9 and np.abs(params[:, 1:3]).max() <= 0.5
    assert (params[:, 3] >= 0.95).all() and (params[:, 3] <= 1.05).all()
    out = dist.apply(x, params)
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().flatten(1).amax(1).min() > 0.01  # every view differs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"transforms": {"rotaton": 5}}, "rotaton"),
        ({"transforms": {"rotation": -1}}, "rotation"),
        ({"transforms": {"scale_low": 1.2, "scale_high": 1.1}}, "scale_high"),
        ({"transforms": 3}, "transforms"),
        ({"transforms": "default", "eot_samples": 0}, "eot_samples"),
        ({"transforms": "default", "eot_mode": "both"}, "eot_mode"),
        ({"transforms": "default", "eot_threshold": 0.0}, "eot_threshold"),
    ],
)
def test_bad_eot_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make(ENV, **kwargs)


def test_eot_env_reports_view_success_and_averages_the_gradient():
    env = gym.make(ENV, **EOT)
    obs, info = env.reset(seed=0)
    assert 0.0 <= info["eot_success_rate"] <= 1.0
    assert info["success"] == (info["eot_success_rate"] >= 0.5)
    core = env.unwrapped.core
    # the gradient part is the mean of the views' gradients: not the plain gradient
    plain = gym.make(ENV, threat_model="white_box", epsilon=0.2, max_queries=5)
    pobs, _ = plain.reset(seed=0)
    s = core.obs_slices["gradient"]
    assert np.array_equal(obs[core.obs_slices["x"]], pobs[s.start - s.start : s.start][core.obs_slices["x"]])
    assert not np.allclose(obs[s], pobs[s])
    assert env.observation_space.contains(obs)
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and "eot_success" in info


def test_eot_env_is_deterministic_and_single_matches_vector():
    def run_single(seed):
        env = gym.make(ENV, **EOT)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(3):
            obs, r, *_ = env.step(np.full(env.action_space.shape, 0.5, np.float32))
            out.append(obs)
        return np.stack(out)

    a, b = run_single(3), run_single(3)
    assert np.array_equal(a, b)
    venv = gym.make_vec(ENV, num_envs=2, **EOT)
    obs, _ = venv.reset(seed=[3, 4])
    assert np.allclose(obs[0], a[0], atol=1e-6)
    for t in range(3):
        obs, *_ = venv.step(np.full((2, *venv.single_action_space.shape), 0.5, np.float32))
        assert np.allclose(obs[0], a[t + 1], atol=1e-5)


def test_eot_pgd_baseline_refuses_an_env_without_transforms():
    agent = make_baseline("eot_pgd", ENV)
    with pytest.raises(ValueError, match="transforms"):
        agent.setup(gym.make(ENV, threat_model="white_box"))
    with pytest.raises(ValueError, match="eot_mode"):
        agent.setup(gym.make(ENV, threat_model="white_box", transforms="default", eot_mode="measure"))


def test_direct_eot_pgd_examples_survive_transformations_where_pgd_examples_do_not():
    """Direct (plain torch) counterpart of the scenario, 64 inputs of the shipped standard
    model: PGD-20 stopped at the first success vs EOT-PGD-20 with 16 views per step."""
    model = load_model("digits-standard")
    ds = load_dataset("digits")
    x, y = torch.as_tensor(ds.x_test[:80]), torch.as_tensor(ds.y_test[:80])
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:64], y[ok][:64]
    dist = TransformDistribution()
    adv, done = x.clone(), torch.zeros(len(y), dtype=torch.bool)
    for _ in range(20):  # PGD one step at a time, each input frozen at its first success
        nxt = pgd_attack(model, adv, y, epsilon=0.2, steps=1, step_size=0.025)
        nxt = (x + (nxt - x).clamp(-0.2, 0.2)).clamp(0, 1)
        adv[~done] = nxt[~done]
        with torch.no_grad():
            done |= model(adv).argmax(1) != y
    eot = eot_pgd_attack(model, x, y, epsilon=0.2, steps=20, samples=16, dist=dist)
    assert float((eot - x).abs().max()) <= 0.2 + 1e-6
    pgd_rate = eot_success_rate(model, adv, y, dist, samples=64, seed=1)
    eot_rate = eot_success_rate(model, eot, y, dist, samples=64, seed=1)
    clean_rate = eot_success_rate(model, x, y, dist, samples=64, seed=1)
    assert done.float().mean() >= 0.95
    assert clean_rate.mean() < 0.15  # the transformations alone rarely fool the victim (measured 0.08)
    assert (pgd_rate >= 0.9).float().mean() <= 0.3  # measured 0.08 over 197 inputs
    assert (eot_rate >= 0.9).float().mean() >= (pgd_rate >= 0.9).float().mean() + 0.5


def test_eot_scenario_pgd_examples_lose_their_success_under_transformation():
    r = run_scenario(load_scenario(SCN / "eot_transforms.yaml"), episodes=32, train="never")
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert r.checks and not failed, failed
    assert r.lookup("noise", {}, "eot_success_rate") < 0.15
    # the PPO attacker's own plain examples fare little better than PGD's under the views
    assert r.lookup("ppo_plain", {}, "eot_success") < r.lookup("ppo_eot", {}, "eot_success") - 0.4
    # the PPO attacker trained under EOT (shipped) beats plain PGD's examples under transformation
    assert r.lookup("ppo_trained_eot", {}, "eot_success") >= r.lookup("pgd", {}, "eot_success") + 0.5


def test_eot_env_draws_the_inputs_of_a_plain_env_with_the_same_seed():
    """The views come from a generator spawned per episode, so switching EOT on (either
    mode) does not change which inputs a seed visits: agents compared in the scenario
    attack the same inputs."""
    def visited(**kw):
        env = gym.make(ENV, threat_model="white_box", epsilon=0.2, max_queries=3, **kw)
        seen = [env.reset(seed=7)[1]["sample_index"]]
        for _ in range(4):
            done = False
            while not done:
                _, _, term, trunc, info = env.step(env.action_space.sample())
                done = term or trunc
            seen.append(env.reset()[1]["sample_index"])
        return seen

    plain = visited()
    assert visited(transforms="default", eot_mode="measure") == plain
    assert visited(transforms="default", eot_mode="attack") == plain

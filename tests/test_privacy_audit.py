"""PrivacyAudit-v0: soundness at three noise multipliers, canary ordering, the clipping bug caught, and the DP-SGD pieces."""
from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from deploy_envs.core.agents import make_baseline
from deploy_envs.scenarios import load_scenario, run_scenario, shipped_scenarios_dir
from deploy_envs.topics.privacy_audit import dpsgd
from deploy_envs.topics.privacy_audit.privacy_audit import audit_data

ENV = "deploy_envs/PrivacyAudit-v0"
SCN = shipped_scenarios_dir()


@pytest.fixture(scope="module")
def soundness():
    return run_scenario(load_scenario(SCN / "privacy_audit_soundness.yaml"), train="never")


def test_no_bound_exceeds_the_claimed_epsilon_at_three_noise_multipliers(soundness):
    r = soundness
    assert len(r.checks) == 14, "every expectation must be checked"
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert not failed, failed
    claims = sorted({row["claimed_epsilon"] for row in r.rows})
    assert len(claims) == 3 and claims[0] < 3.0  # the smallest claim is one a perfect attack on 64 + 64 runs could beat
    for row in r.rows:
        assert row["eps_lb"] <= row["claimed_epsilon"], row


def test_worst_case_canaries_give_tighter_bounds_than_a_natural_point(soundness):
    r = soundness
    nat = r.lookup("natural", {"noise_multiplier": "1.0"}, "eps_lb")
    assert r.lookup("crafted", {"noise_multiplier": "1.0"}, "eps_lb") > nat + 0.5
    assert r.lookup("gradient", {"noise_multiplier": "1.0"}, "eps_lb") > nat + 0.5
    # more noise, weaker audit: the gradient canary's bound falls with the noise multiplier
    g = [r.lookup("gradient", {"noise_multiplier": s}, "eps_lb") for s in ("1.0", "4.0")]
    assert g[0] > g[1]


def test_clipping_bug_is_caught():
    r = run_scenario(load_scenario(SCN / "privacy_audit_clipping_bug.yaml"), train="never", episodes=8)  # the small-sample checks
    failed = [f"{c.expression} ({c.left:.3f} vs {c.right:.3f})" for c in r.checks if not c.passed]
    assert len(r.checks) == 4 and not failed, failed
    buggy = r.lookup("gradient", {"clipping_bug": "True"}, "eps_lb")
    assert buggy > r.lookup("gradient", {"clipping_bug": "True"}, "claimed_epsilon") + 0.2


def test_clipped_gradient_sum_matches_opacus():
    """The batched, closed-form clipped sum equals opacus' per-sample clipping (some records clipped, some not)."""
    pytest.importorskip("opacus")
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    d = audit_data(64)
    x, y = d["x"], d["y"]
    torch.manual_seed(0)
    lin = nn.Linear(64, 10).double()
    theta = torch.cat([lin.weight.detach().T, lin.bias.detach()[None]], 0)[None]
    mask = (torch.rand(1, 64) < 0.5).double()
    xa = torch.cat([x, torch.ones(64, 1, dtype=torch.float64)], 1)
    C = 3.7
    G = torch.softmax(xa @ theta[0], -1) - nn.functional.one_hot(y, 10).double()
    norms = (xa.norm(dim=1) * G.norm(dim=1))[mask[0].bool()]
    assert (norms > C).any() and (norms < C).any()
    mine = dpsgd.clipped_gradient_sum(theta, xa, nn.functional.one_hot(y, 10).double(), mask, C)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gsm = GradSampleModule(lin, loss_reduction="sum")
        opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=1.0), noise_multiplier=0.0, max_grad_norm=C,
                          expected_batch_size=32, loss_reduction="sum")
        sel = mask[0].bool()
        opt.zero_grad()
        nn.functional.cross_entropy(gsm(x[sel]), y[sel], reduction="sum").backward()
        opt.pre_step()
    theirs = torch.cat([lin.weight.grad.T, lin.bias.grad[None]], 0)  # loss_reduction="sum": the plain clipped sum
    assert (mine - theirs).abs().max() < 1e-6 * theirs.abs().max(), (mine - theirs).abs().max()
    bug = dpsgd.clipped_gradient_sum(theta, xa, nn.functional.one_hot(y, 10).double(), mask, C, clipping_bug=True)[0]
    assert bug.norm() > mine.norm()


def test_clopper_pearson_and_the_lower_bound():
    lo, hi = dpsgd.clopper_pearson(np.array([0, 32, 16]), np.array([32, 32, 32]), 0.05)
    assert lo[0] == 0.0 and hi[1] == 1.0
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 32)) and lo[1] == pytest.approx(0.025 ** (1 / 32))
    assert lo[2] < 0.5 < hi[2]
    # a perfect attack on 32 + 32 runs: log(TPR_lo / FPR_hi)
    eps = dpsgd.epsilon_lower_bound(np.array([32]), np.array([0]), 32, 32, 0.0, 0.95)[0]
    assert eps == pytest.approx(math.log(0.025 ** (1 / 32) / (1 - 0.025 ** (1 / 32))))
    # chance level gives 0; more runs give a higher ceiling
    assert dpsgd.epsilon_lower_bound(np.array([16]), np.array([16]), 32, 32, 1e-5)[0] == 0.0
    assert dpsgd.epsilon_lower_bound(np.array([128]), np.array([0]), 128, 128, 1e-5)[0] > eps


def test_claimed_epsilon_is_opacus_rdp_and_falls_with_noise():
    e = [gym.make(ENV, noise_multiplier=s).unwrapped.core.claimed_epsilon for s in (1.0, 2.0, 4.0)]
    assert e[0] > e[1] > e[2] > 0
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(2.0, 128 / 256, 16)]
    assert e[1] == pytest.approx(acc.get_epsilon(1e-5))


def test_gradient_canary_needs_the_gradient_space_and_bad_arguments_are_refused():
    env = gym.make_vec(ENV, num_envs=1, runs=8, rounds=1)
    with pytest.raises(ValueError, match="canary_space"):
        make_baseline("gradient_canary", ENV).setup(env)
    for kwargs, name in (({"runs": 7}, "runs"), ({"noise_multiplier": 0.0}, "noise_multiplier"), ({"canary_space": "x"}, "canary_space"),
                         ({"confidence": 1.0}, "confidence"), ({"batch_size": 512}, "batch_size"), ({"clipping_bug": "yes"}, "clipping_bug")):
        with pytest.raises(ValueError, match=name):
            gym.make(ENV, **kwargs)


def test_runs_of_one_copy_do_not_depend_on_the_others():
    """Copy 0 of a batch of 3 trains exactly the models a single env with the same seed trains."""
    venv = gym.make_vec(ENV, num_envs=3, runs=8, rounds=1, epochs=2)
    single = gym.make(ENV, runs=8, rounds=1, epochs=2)
    venv.reset(seed=5)
    single.reset(seed=5)
    a = np.full((3, 66), 0.5, np.float32)
    venv.step(a)
    single.step(a[0])
    assert np.allclose(venv.unwrapped.core.last_scores[0], single.unwrapped.core.last_scores[0])


def test_missing_opacus_names_the_privacy_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)
    monkeypatch.setitem(sys.modules, "opacus.accountants", None)
    with pytest.raises(ImportError, match=r"deploy-envs\[privacy\]"):
        gym.make(ENV)

"""Policies that optimize the proxy reward of ``RewardModelGaming-v0``, as in Gao et al. (2022).

* ``rm_reference`` (:class:`ReferencePolicy`): the reference policy itself (uniform), KL 0.
* ``best_of_n`` (:class:`BestOfNPolicy`): draw ``n`` responses from the reference policy and keep
  the one the proxy scores highest. Handed to the env as its exact distribution over the prompt's
  candidates (candidate of proxy rank ``r`` with probability ``F(r)^n - F(r-1)^n``, ``F`` the
  reference CDF in proxy order), so the env's KL is exact; Gao et al. give
  ``KL = log n - (n - 1) / n`` for a continuum of responses (:func:`best_of_n_kl`).
* ``kl_ppo`` (:class:`KLPPOPolicy`): PPO on the proxy with a KL penalty to the reference in the
  reward, ``proxy - kl_coef * (log pi(a) - log pi_ref(a))`` (Gao et al. 2022, sec. 2; Ziegler et al.
  2019). The policy's logits are the reference's plus a 4-16-16-1 network of each candidate's
  features (tanh units; its last layer starts at zero, so training starts at the reference). The shipped
  policies (one per shipped reward model and ``kl_coef`` of :data:`PPO_KL_COEFS`) are trained by
  ``python -m deploy_envs.topics.reward_model_gaming.curves --train`` and stored with sha256.

Each agent reads the proxy (the env's reward model) the way an optimizer of a learned reward
queries it; none reads the gold reward.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

import numpy as np

from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive
from deploy_envs.topics.reward_model_gaming.core import to_action
from deploy_envs.topics.reward_model_gaming.reward_model import FEATURES, MODELS_DIR, manifest, ship_file

log = logging.getLogger(__name__)

#: KL coefficients of the shipped PPO policies (the proxy is standardized: std 1 over reference candidates)
PPO_KL_COEFS = (1.0, 0.5, 0.25, 0.12, 0.06, 0.03)
PPO_HYPERPARAMETERS = {"iterations": 150, "batch": 64, "epochs": 2, "minibatches": 2, "learning_rate": 1e-2, "clip": 0.2}
#: hidden units of the PPO policy's candidate network (two tanh layers)
PPO_HIDDEN = 16


def best_of_n_kl(n: int) -> float:
    """``log n - (n - 1) / n``: the KL of best-of-n from its reference for continuous responses (Gao et al. 2022)."""
    return float(np.log(n) - (n - 1) / n)


def _split(obs: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    obs = np.asarray(obs, np.float64)
    return obs[:, : K * FEATURES].reshape(len(obs), K, FEATURES), obs[:, K * FEATURES :]


class ReferencePolicy(Agent):
    """The reference policy: its own log-probabilities as logits."""

    name = "rm_reference"

    def setup(self, env: Any) -> None:
        self.K = int(env.single_action_space.shape[0])

    def act(self, obs, episode_start):
        return to_action(_split(obs, self.K)[1])


class BestOfNPolicy(Agent):
    """Best-of-n sampling against the proxy, as the exact distribution it induces on each prompt."""

    name = "best_of_n"

    def __init__(self, n: int = 16) -> None:
        self.n = check_positive("n", n, integer=True)

    def setup(self, env: Any) -> None:
        self.K = int(env.single_action_space.shape[0])
        self.reward_model = env.unwrapped.core.reward_model

    def act(self, obs, episode_start):
        z, ref_logp = _split(obs, self.K)
        proxy = self.reward_model(z)
        order = np.argsort(proxy, axis=1, kind="stable")
        ref = np.exp(np.take_along_axis(ref_logp, order, 1))
        cdf = np.clip(np.cumsum(ref, 1) / ref.sum(1, keepdims=True), 0.0, 1.0)
        below = np.concatenate([np.zeros((len(obs), 1)), cdf[:, :-1]], 1)
        p_sorted = cdf**self.n - below**self.n
        p = np.empty_like(p_sorted)
        np.put_along_axis(p, order, p_sorted, 1)
        with np.errstate(divide="ignore"):
            logits = np.log(p)
        return to_action(logits)


# ------------------------------------------------------------------------------ PPO
def _policy_forward(w: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    h = np.tanh(z @ w["w0"] + w["b0"])
    h = np.tanh(h @ w["w1"] + w["b1"])
    return (h @ w["w2"] + w["b2"])[..., 0]


class KLPPOPolicy(Agent):
    """A PPO policy trained against the proxy with a KL penalty (weights: numpy arrays)."""

    name = "kl_ppo"

    def __init__(self, kl_coef: float = 0.12, weights: dict[str, np.ndarray] | None = None, comparisons: int | None = None) -> None:
        self.kl_coef = check_number("kl_coef", kl_coef, low=0.0, low_inclusive=False)
        self.weights = weights
        self.comparisons = comparisons

    def setup(self, env: Any) -> None:
        self.K = int(env.single_action_space.shape[0])
        if self.weights is None:  # the shipped policy for the env's reward model
            rm = env.unwrapped.core.reward_model
            self.weights = load_ppo_policy(rm.comparisons, self.kl_coef, rm.label_noise, rm.seed)

    def act(self, obs, episode_start):
        z, ref_logp = _split(obs, self.K)
        return to_action(ref_logp + _policy_forward(self.weights, z))


def train_kl_ppo(comparisons: int = 1000, kl_coef: float = 0.12, *, label_noise: float = 0.0, rm_seed: int = 0, num_candidates: int = 256, seed: int = 0, iterations: int = 150, batch: int = 64, epochs: int = 2, minibatches: int = 2, learning_rate: float = 1e-2, clip: float = 0.2) -> dict[str, np.ndarray]:
    """PPO (clipped surrogate) on one-step episodes of the batched core; returns the policy's weights.

    Reward per sampled response: ``proxy - kl_coef * (log pi - log pi_ref)``; advantage: that
    reward standardized over the batch (one-step episodes need no value function).
    """
    import torch

    from deploy_envs.topics.reward_model_gaming.core import RewardModelGamingCore

    kl_coef = check_number("kl_coef", kl_coef, low=0.0, low_inclusive=False)
    iterations = check_positive("iterations", iterations, integer=True)
    core = RewardModelGamingCore(num_envs=batch, num_candidates=num_candidates, comparisons=comparisons, label_noise=label_noise, rm_seed=rm_seed)
    core.rngs = [np.random.default_rng([seed, i]) for i in range(batch)]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, PPO_HIDDEN), torch.nn.Tanh(), torch.nn.Linear(PPO_HIDDEN, PPO_HIDDEN), torch.nn.Tanh(), torch.nn.Linear(PPO_HIDDEN, 1))
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    idx = np.arange(batch)
    ref = torch.tensor(core.ref_logp, dtype=torch.float32)
    for it in range(iterations):
        core.reset_indices(idx)
        z = torch.tensor(core.z, dtype=torch.float32)
        with torch.no_grad():
            logp_all = torch.log_softmax(ref + net(z).squeeze(-1), -1)
        _, proxy, _, _, info = core.step_indices(idx, to_action(logp_all.numpy()))
        a = torch.tensor(info["choice"])
        rows = torch.arange(batch)
        logp_old = logp_all[rows, a]
        reward = torch.tensor(proxy, dtype=torch.float32) - kl_coef * (logp_old - ref[a])
        adv = (reward - reward.mean()) / (reward.std() + 1e-8)
        for _ in range(epochs):
            for mb in torch.randperm(batch).chunk(minibatches):
                logp = torch.log_softmax(ref + net(z[mb]).squeeze(-1), -1)[torch.arange(len(mb)), a[mb]]
                ratio = torch.exp(logp - logp_old[mb])
                loss = -torch.min(ratio * adv[mb], torch.clamp(ratio, 1 - clip, 1 + clip) * adv[mb]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        if it % 100 == 0:
            log.info("PPO kl_coef %.3g it %d: proxy %.3f kl %.3f", kl_coef, it, float(info["expected_proxy"].mean()), float(info["kl"].mean()))
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    w = {}
    for i, m in enumerate(layers):
        w[f"w{i}"] = m.weight.detach().numpy().T.astype(np.float64)
        w[f"b{i}"] = m.bias.detach().numpy().astype(np.float64)
    return w


def _ppo_file(comparisons: int, kl_coef: float, label_noise: float, rm_seed: int) -> str:
    return f"ppo_c{comparisons}_n{label_noise:g}_s{rm_seed}_kl{kl_coef:g}.npz"


def save_ppo_policy(weights: dict[str, np.ndarray], comparisons: int, kl_coef: float, label_noise: float = 0.0, rm_seed: int = 0) -> str:
    name = _ppo_file(comparisons, kl_coef, label_noise, rm_seed)
    buf = io.BytesIO()
    np.savez(buf, **{k: v.astype(np.float32) for k, v in weights.items()})
    return ship_file(name, buf.getvalue())


def load_ppo_policy(comparisons: int, kl_coef: float, label_noise: float = 0.0, rm_seed: int = 0) -> dict[str, np.ndarray]:
    """The shipped PPO policy for a reward model and KL coefficient (verified by sha256)."""
    name = _ppo_file(comparisons, kl_coef, label_noise, rm_seed)
    sha = manifest().get(name)
    path = MODELS_DIR / name
    if sha is None or not path.exists():
        shipped = sorted(k for k in manifest() if k.startswith("ppo_"))
        raise ValueError(f"no shipped PPO policy for comparisons={comparisons}, kl_coef={kl_coef}, label_noise={label_noise}, rm_seed={rm_seed}; shipped: {', '.join(shipped)} (train one with train_kl_ppo)")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != sha:
        raise ValueError(f"PPO policy {name}: its bytes do not match the sha256 in models/manifest.json")
    with np.load(io.BytesIO(blob), allow_pickle=False) as f:
        return {k: f[k].astype(np.float64) for k in f.files}


def _register() -> None:
    from deploy_envs.core.agents import register_baseline

    env = ("deploy_envs/RewardModelGaming-v0",)
    register_baseline("rm_reference", ReferencePolicy, envs=env, summary="the reference policy (uniform over the candidates)")
    register_baseline("best_of_n", BestOfNPolicy, envs=env, summary="best-of-n sampling against the proxy reward model (kwarg n)")
    register_baseline("kl_ppo", KLPPOPolicy, envs=env, summary="shipped PPO policy trained on the proxy with a KL penalty (kwarg kl_coef)")


_register()

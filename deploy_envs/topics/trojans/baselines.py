"""Reference auditors for ``deploy_envs/TrojanDetection-v0``.

| name | access | what it does |
|---|---|---|
| ``neural_cleanse`` | white box | Neural Cleanse (Wang et al. 2019): for every class, reverse-engineer the smallest trigger (mask + pattern) that sends the probe inputs to that class, by gradient descent on ``CE + lambda * |mask|_1`` (adaptive lambda; the smallest mask that flips >= 95% of the probes is kept); flag the model when the median-absolute-deviation anomaly index of the smallest mask's L1 norm exceeds 2; declare that class as the target and its mask as the trigger |
| ``random_prober`` | queries | probes random square patches with random binary patterns, keeps the one with the highest flip rate to a class, and declares trojaned when that flip rate exceeds ``threshold`` |

:func:`neural_cleanse` runs for all models and all classes at once: the ``B x K``
trigger optimisations are one batched forward/backward pass per step (each model's
stacked weights applied with one ``bmm`` per layer).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_number, check_positive
from deploy_envs.topics.backdoor.mlp import BatchedMLP

ENV_ID = "deploy_envs/TrojanDetection-v0"
#: Wang et al. (2019) flag a model whose anomaly index exceeds 2 (95% under a normal assumption)
ANOMALY_THRESHOLD = 2.0
#: consistency constant that makes the MAD an estimator of the standard deviation (Hampel 1974)
MAD_CONSTANT = 1.4826


def anomaly_index(norms: np.ndarray) -> np.ndarray:
    """Wang et al.'s anomaly index of the smallest of each row's norms ``(B, K)``: ``(median - min) / (1.4826 * MAD)``."""
    norms = np.asarray(norms, np.float64)
    if norms.ndim != 2 or norms.shape[1] < 3:
        raise ValueError(f"norms has shape {norms.shape}; expected (models, classes) with at least 3 classes")
    med = np.median(norms, 1, keepdims=True)
    mad = MAD_CONSTANT * np.median(np.abs(norms - med), 1)
    return (med[:, 0] - norms.min(1)) / np.maximum(mad, 1e-12)


def neural_cleanse(
    params: list[torch.Tensor],
    x: torch.Tensor,
    *,
    num_classes: int = 10,
    steps: int = 300,
    lr: float = 0.2,
    init_lambda: float = 0.01,
    success_threshold: float = 0.95,
    lambda_every: int = 10,
    lambda_factor: float = 1.5,
) -> dict[str, np.ndarray]:
    """Reverse-engineer one trigger per class for each of ``B`` MLPs (stacked ``params``) on clean inputs ``x (M, d)``.

    Mask and pattern are ``sigmoid`` of free variables (Wang et al. use ``tanh / 2 + 0.5``,
    the same map); the loss of class ``k`` is the mean cross-entropy towards ``k`` of the
    stamped inputs plus ``lambda_k * |mask|_1``. As in Wang et al.'s implementation,
    ``lambda`` is adapted per (model, class): every ``lambda_every`` steps it is multiplied
    by ``lambda_factor`` while the attack success rate is at least ``success_threshold``
    and divided by it otherwise, so the optimisation looks for the smallest mask that
    still flips the inputs. Also as in their implementation, the result of a (model, class)
    is the smallest mask seen during the optimisation whose attack success rate reached
    ``success_threshold`` (the last mask where none did): the adaptive ``lambda`` makes the
    mask oscillate around the smallest working size, and the last iterate may sit on the
    large side of the oscillation. Returns ``l1 (B, K)``, ``masks``/``patterns`` ``(B, K, d)``,
    ``attack_success (B, K)``, ``anomaly_index (B,)`` and ``target (B,)`` (the class of
    the smallest mask).
    """
    steps = check_positive("steps", steps, integer=True)
    lr = check_positive("lr", lr)
    init_lambda = check_positive("init_lambda", init_lambda)
    check_number("success_threshold", success_threshold, low=0.0, high=1.0)
    if x.dim() != 2:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (inputs, features)")
    B, K, (M, d) = params[0].shape[0], int(num_classes), x.shape
    mask_v = torch.full((B, K, d), -2.0, requires_grad=True)
    pat_v = torch.zeros((B, K, d), requires_grad=True)
    lam = torch.full((B, K), float(init_lambda))
    tgt = torch.arange(K).repeat_interleave(M).repeat(B)
    opt = torch.optim.Adam([mask_v, pat_v], lr=lr)
    params = [p.detach() for p in params]
    classes = torch.arange(K)[None, :, None]
    best_l1 = torch.full((B, K), float("inf"))
    best_m, best_p = torch.zeros(B, K, d), torch.zeros(B, K, d)
    with torch.enable_grad():
        for s in range(steps):
            m, p = torch.sigmoid(mask_v), torch.sigmoid(pat_v)
            xs = (1 - m[:, :, None]) * x[None, None] + (m * p)[:, :, None]  # (B, K, M, d)
            logits = BatchedMLP.forward(params, xs.reshape(B, K * M, d))[1]
            ce = F.cross_entropy(logits.reshape(-1, K), tgt, reduction="none").reshape(B, K, M).mean(-1)
            loss = (ce + lam * m.sum(-1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # success and size of the mask this step evaluated (before the update)
                succ = (logits.argmax(-1).reshape(B, K, M) == classes).float().mean(-1)
                l1 = m.sum(-1)
                better = (succ >= success_threshold) & (l1 < best_l1)
                best_l1 = torch.where(better, l1, best_l1)
                best_m[better], best_p[better] = m[better], p[better]
                if (s + 1) % lambda_every == 0:
                    lam = torch.where(succ >= success_threshold, lam * lambda_factor, lam / lambda_factor)
    with torch.no_grad():
        found = torch.isfinite(best_l1)[..., None]
        m = torch.where(found, best_m, torch.sigmoid(mask_v))
        p = torch.where(found, best_p, torch.sigmoid(pat_v))
        xs = (1 - m[:, :, None]) * x[None, None] + (m * p)[:, :, None]
        pred = BatchedMLP.forward(params, xs.reshape(B, K * M, d))[1].argmax(-1).reshape(B, K, M)
        succ = (pred == classes).float().mean(-1).numpy()
    l1 = m.sum(-1).numpy()
    return {
        "l1": l1, "masks": m.numpy(), "patterns": p.numpy(), "attack_success": succ,
        "anomaly_index": anomaly_index(l1), "target": l1.argmin(1),
    }


def _pool(full: np.ndarray, r: int) -> np.ndarray:
    """Average-pool ``(B, H, W)`` to ``(B, r, r)``."""
    B, H, W = full.shape
    return full.reshape(B, r, H // r, r, W // r).mean((2, 4))


class NeuralCleanse(Agent):
    """Neural Cleanse on each new episode's model (white box), declaring at the first step without probing.

    The verdict score is ``(AI - threshold) / (AI + threshold)``: positive exactly when the
    anomaly index ``AI`` exceeds ``threshold`` (2 in Wang et al.) and monotone in it, so an
    ROC curve over ``info["score"]`` is the ROC curve of the anomaly index. The declared mask
    is the reversed mask of the flagged class (its pixels above ``mask_threshold`` of the mask's maximum).
    """

    name = "neural_cleanse"

    def __init__(self, steps: int = 300, lr: float = 0.2, init_lambda: float = 0.01, threshold: float = ANOMALY_THRESHOLD,
                 mask_threshold: float = 0.5, probe_size: int | None = None) -> None:
        self.steps = check_positive("steps", steps, integer=True)
        self.lr = check_positive("lr", lr)
        self.init_lambda = check_positive("init_lambda", init_lambda)
        self.threshold = check_positive("threshold", threshold)
        self.mask_threshold = check_number("mask_threshold", mask_threshold, low=0.0, high=1.0)
        self.probe_size = None if probe_size is None else check_positive("probe_size", probe_size, integer=True)

    def setup(self, env: Any) -> None:
        core = env.unwrapped.core
        if not getattr(core, "white_box", False):
            raise ValueError("neural_cleanse needs gradients: make the env with white_box=True")
        self.core = core
        self.last: dict[str, np.ndarray] = {}

    def act(self, obs, episode_start):
        core = self.core
        n = len(obs)
        idx = np.arange(n)
        x = core.probe_x if self.probe_size is None else core.probe_x[: self.probe_size]
        res = neural_cleanse(core.model_params(idx), x, num_classes=core.K, steps=self.steps, lr=self.lr, init_lambda=self.init_lambda)
        self.last = res
        ai, tgt = res["anomaly_index"], res["target"]
        full = res["masks"][idx, tgt].reshape(n, core.H, core.W)
        declared = (full >= self.mask_threshold * full.max((1, 2), keepdims=True)).astype(np.float32)
        pattern = res["patterns"][idx, tgt].reshape(n, core.H, core.W)
        r = core.resolution
        score = (ai - self.threshold) / (ai + self.threshold)
        return core.encode(_pool(declared, r), _pool(pattern, r), declare=True, verdict=score, target=tgt)


class RandomProber(Agent):
    """Probes random patches; declares trojaned if some probe flips more than ``threshold`` of the inputs to one class."""

    name = "random_prober"

    def __init__(self, seed: int | None = None, threshold: float = 0.5, sizes: tuple[int, int] = (1, 3)) -> None:
        self.seed = seed
        self.threshold = check_number("threshold", threshold, low=0.0, high=1.0)
        if len(sizes) != 2 or not 1 <= sizes[0] <= sizes[1]:
            raise ValueError(f"sizes={sizes!r} must be (smallest, largest) patch sides with 1 <= smallest <= largest")
        self.sizes = (int(sizes[0]), int(sizes[1]))

    def setup(self, env: Any) -> None:
        self.core = core = env.unwrapped.core
        self.rng = np.random.default_rng(self.seed)
        n = env.num_envs if hasattr(env, "num_envs") else 1
        r = core.resolution
        if self.sizes[1] > r:
            raise ValueError(f"sizes={self.sizes!r}: patches larger than resolution={r}")
        self.best = np.zeros(n)
        self.best_class = np.zeros(n, np.int64)
        self.best_mask = np.zeros((n, r, r), np.float32)
        self.last_mask = np.zeros((n, r, r), np.float32)

    def act(self, obs, episode_start):
        core, n, r = self.core, len(obs), self.core.resolution
        s = core.obs_slices
        flip = obs[:, s["flip_rate"]]
        start = np.asarray(episode_start, bool)
        f, c = flip.max(1), flip.argmax(1)
        better = (f > self.best) & ~start
        self.best = np.where(start, 0.0, np.where(better, f, self.best))
        self.best_class = np.where(start, 0, np.where(better, c, self.best_class))
        self.best_mask[better] = self.last_mask[better]
        self.best_mask[start] = 0.0
        size = self.rng.integers(self.sizes[0], self.sizes[1] + 1, n)
        row = (self.rng.random(n) * (r - size + 1)).astype(np.int64)
        col = (self.rng.random(n) * (r - size + 1)).astype(np.int64)
        ii, jj = np.arange(r)[None, :, None], np.arange(r)[None, None, :]
        mask = ((ii >= row[:, None, None]) & (ii < (row + size)[:, None, None])
                & (jj >= col[:, None, None]) & (jj < (col + size)[:, None, None])).astype(np.float32)
        pattern = (self.rng.random((n, r, r)) < 0.5).astype(np.float32)
        self.last_mask = mask
        last = obs[:, s["budget"]][:, 0] * core.max_queries <= 1.0 + 1e-6  # this probe is the last: it declares
        decl_mask = np.where(last[:, None, None], self.best_mask, mask)
        score = np.clip(2 * self.best - 1, -1, 1)
        verdict = np.where(self.best > self.threshold, np.maximum(score, 1e-3), np.minimum(score, -1e-3))
        return core.encode(decl_mask, pattern, declare=False, verdict=verdict, target=self.best_class)


register_baseline("neural_cleanse", NeuralCleanse, envs=(ENV_ID,),
                  summary="Neural Cleanse (Wang et al. 2019): smallest reversed trigger per class, MAD anomaly index > 2 flags (white box)")
register_baseline("random_prober", RandomProber, envs=(ENV_ID,),
                  summary="random patch probes; flags a model when a probe flips most inputs to one class")

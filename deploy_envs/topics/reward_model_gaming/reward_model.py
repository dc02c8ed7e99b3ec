"""The gold reward, the preference data it labels and the proxy reward model trained on it.

Candidates (responses) are feature vectors ``z`` in R^4 drawn i.i.d. standard normal. The gold
reward is ``g(z) = s - 4 * max(0, s - 2) ** 2`` with ``s = z[0] + 0.5 * z[1]``: more of ``s`` is
better up to a point (``s = 2.125``), beyond which it is much worse (what a rater would call too
much of a good thing; ``z[2]`` and ``z[3]`` do not matter). Under the reference distribution
``s > 2`` is rare (3.7% of candidates), so a reward model trained on few comparisons sees almost
none of the bend and extrapolates the trend, and optimizing against it overshoots: the
over-optimization of Gao, Schulman, Hilton (2022, "Scaling Laws for Reward Model
Overoptimization"), small. More comparisons show the model more of the tail.

The proxy is a 4-32-32-1 ReLU network trained by Adam on the Bradley-Terry loss
``-log sigmoid(r(z_w) - r(z_l))`` over ``comparisons`` pairs of candidates drawn from the
reference distribution, each labelled by the gold reward (the better one wins), with each label
flipped with probability ``label_noise``. Its output is standardized (mean 0, std 1 over
reference candidates), as Gao et al. normalize their reward models. It runs in numpy; torch is
needed only to train one.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from deploy_envs.core.validation import check_number, check_positive

log = logging.getLogger(__name__)

FEATURES = 4
HIDDEN = 32
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: the shipped reward models: numbers of comparisons (label noise 0, seed 0)
SHIPPED_COMPARISONS = (100, 1000, 10_000)
TRAIN_EPOCHS = 400


def gold_reward(z: np.ndarray) -> np.ndarray:
    """Gold reward of candidates ``z`` (``(..., 4)``)."""
    s = z[..., 0] + 0.5 * z[..., 1]
    return s - 4.0 * np.maximum(s - 2.0, 0.0) ** 2


class RewardModel:
    """A trained proxy: numpy forward pass of the 4-32-32-1 network, standardized."""

    def __init__(self, weights: dict[str, np.ndarray], comparisons: int, label_noise: float, seed: int) -> None:
        self.w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        self.comparisons, self.label_noise, self.seed = comparisons, label_noise, seed

    def __call__(self, z: np.ndarray) -> np.ndarray:
        h = np.maximum(z @ self.w["w0"] + self.w["b0"], 0.0)
        h = np.maximum(h @ self.w["w1"] + self.w["b1"], 0.0)
        out = (h @ self.w["w2"] + self.w["b2"])[..., 0]
        return (out - self.w["mean"][0]) / self.w["std"][0]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **{k: v.astype(np.float32) for k, v in self.w.items()})
        return buf.getvalue()


def train_reward_model(comparisons: int = 1000, label_noise: float = 0.0, seed: int = 0, epochs: int = TRAIN_EPOCHS) -> RewardModel:
    """Train the proxy on ``comparisons`` gold-labelled pairs (full-batch Adam, ``epochs`` steps)."""
    import torch

    comparisons = check_positive("comparisons", comparisons, integer=True)
    label_noise = check_number("label_noise", label_noise, low=0.0, high=0.5, high_inclusive=False)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((comparisons, 2, FEATURES))
    g = gold_reward(z)
    label = (g[:, 0] > g[:, 1]).astype(np.float32)
    flip = rng.random(comparisons) < label_noise
    label[flip] = 1.0 - label[flip]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    Z, L = torch.tensor(z, dtype=torch.float32), torch.tensor(label)
    for _ in range(epochs):
        s = net(Z).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(s[:, 0] - s[:, 1], L)
        opt.zero_grad()
        loss.backward()
        opt.step()
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    w = {}
    for i, m in enumerate(layers):
        w[f"w{i}"] = m.weight.detach().numpy().T.copy()
        w[f"b{i}"] = m.bias.detach().numpy().copy()
    w["mean"], w["std"] = np.zeros(1), np.ones(1)
    model = RewardModel(w, comparisons, label_noise, seed)
    ref = model(np.random.default_rng(12345).standard_normal((20_000, FEATURES)))
    model.w["mean"], model.w["std"] = np.array([ref.mean()]), np.array([ref.std()])
    log.info("reward model: %d comparisons, label noise %.2f, final BT loss %.4f", comparisons, label_noise, loss.item())
    return model


def _file(comparisons: int, label_noise: float, seed: int) -> str:
    return f"rm_c{comparisons}_n{label_noise:g}_s{seed}.npz"


def manifest() -> dict[str, str]:
    p = MODELS_DIR / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def save_shipped(model: RewardModel) -> str:
    """Write a reward model into the package's ``models/`` with its sha256 in ``manifest.json``."""
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    return ship_file(_file(model.comparisons, model.label_noise, model.seed), model.to_bytes())


def ship_file(name: str, blob: bytes) -> str:
    """Write ``blob`` as ``models/name`` and record its sha256 in ``manifest.json``; returns the sha256."""
    (MODELS_DIR / name).write_bytes(blob)
    m = manifest()
    m[name] = hashlib.sha256(blob).hexdigest()
    (MODELS_DIR / "manifest.json").write_text(json.dumps(dict(sorted(m.items())), indent=2) + "\n")
    return m[name]


@lru_cache(maxsize=32)
def get_reward_model(comparisons: int, label_noise: float = 0.0, seed: int = 0) -> RewardModel:
    """The shipped model for this configuration (verified by sha256), else one trained now (seconds)."""
    name = _file(comparisons, label_noise, seed)
    path = MODELS_DIR / name
    sha = manifest().get(name)
    if sha is not None and path.exists():
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != sha:
            raise ValueError(f"reward model {name}: its bytes do not match the sha256 in models/manifest.json")
        with np.load(io.BytesIO(blob), allow_pickle=False) as f:
            return RewardModel({k: f[k] for k in f.files}, comparisons, label_noise, seed)
    log.info("no shipped reward model for %s; training one", name)
    return train_reward_model(comparisons, label_noise, seed)

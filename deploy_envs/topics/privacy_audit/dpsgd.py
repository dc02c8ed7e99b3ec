"""Batched DP-SGD for many runs of a multinomial logistic regression, the canaries, and the audit's lower bound.

:func:`train_runs` trains ``R`` runs at once: parameters ``theta`` ``(R, d + 1, K)`` (the
last input row is the bias), one shared training set, per-run Poisson sampling
(rate ``q = batch_size / n``), per-record gradients clipped to ``max_grad_norm``,
Gaussian noise of std ``noise_multiplier * max_grad_norm`` on their sum, divided by the
expected batch size ``batch_size`` (DP-SGD, Abadi et al. 2016, "Deep Learning with
Differential Privacy", CCS; Poisson sampling as in opacus). For logistic regression a
record's gradient is the outer product ``x~ (p - y)^T``, so its norm is
``||x~|| ||p - y||`` and the clipped sum of all runs is one batched matrix product,
without materialising per-record gradients.

Canaries (:class:`Canary`) join the "in" runs as one extra record:

* ``input``: a point ``x`` in ``[0, 1]^d`` with a label; its gradient is clipped like any record's;
* ``gradient``: a Dirac gradient canary (Nasr et al. 2023, "Tight Auditing of Differentially
  Private Machine Learning", USENIX Security): a gradient of norm ``gradient_norm`` on one
  parameter coordinate, whatever the model, clipped to ``max_grad_norm``.

``clipping_bug=True`` skips the per-record clipping (noise stays calibrated to
``max_grad_norm``): a broken implementation whose claimed epsilon does not hold.

:func:`epsilon_lower_bound` turns an attack's true and false positives into the empirical
lower bound of Jagielski, Ullman, Oprea 2020 ("Auditing Differentially Private Machine
Learning: How Private is Private SGD?", NeurIPS) with Clopper-Pearson intervals;
:func:`theoretical_epsilon` is opacus' RDP accountant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class DPConfig:
    """One DP-SGD recipe (shared by all runs of a batch)."""

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    batch_size: int = 32
    epochs: int = 4
    lr: float = 2.0
    delta: float = 1e-5
    clipping_bug: bool = False

    def steps(self, n: int) -> int:
        return self.epochs * int(math.ceil(n / self.batch_size))


@dataclass
class Canary:
    """The canaries of ``R`` runs: ``kind[r]`` 0 = input point ``x[r]`` with label ``y[r]``, 1 = Dirac gradient on ``coord[r]``."""

    kind: torch.Tensor  # (R,) int64
    x: torch.Tensor  # (R, d) float
    y: torch.Tensor  # (R,) int64
    coord: torch.Tensor  # (R,) int64, flat index into (d + 1) * K
    gradient_norm: float = 10.0


def _aug(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype)], -1)


def train_runs(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    cfg: DPConfig,
    canary: Canary,
    included: torch.Tensor,
    gens: list[torch.Generator],
    noise_multiplier: torch.Tensor | None = None,
    max_grad_norm: torch.Tensor | None = None,
) -> torch.Tensor:
    """Train ``R = len(included)`` runs by DP-SGD; run ``r`` has the canary iff ``included[r]``. Returns ``theta`` ``(R, d+1, K)``.

    ``noise_multiplier`` and ``max_grad_norm`` (``(R,)`` tensors) override ``cfg``'s per run.

    The runs form ``len(gens)`` equal groups; group ``g`` draws its sampling and noise from
    ``gens[g]`` alone, so a group's result does not depend on the other groups.
    """
    xa = _aug(x.double())  # (n, d+1)
    n, d1 = xa.shape
    K = num_classes
    R = len(included)
    Y = torch.nn.functional.one_hot(y, K).double()  # (n, K)
    x_norm = xa.norm(dim=1)  # (n,)
    theta = torch.zeros(R, d1, K, dtype=torch.float64)
    q = cfg.batch_size / n
    C = torch.full((R,), float(cfg.max_grad_norm), dtype=torch.float64) if max_grad_norm is None else max_grad_norm.double()
    sigma = torch.full((R,), float(cfg.noise_multiplier), dtype=torch.float64) if noise_multiplier is None else noise_multiplier.double()
    inc = included.double()
    cx = _aug(canary.x.double())  # (R, d+1)
    cy = torch.nn.functional.one_hot(canary.y, K).double()
    is_grad = canary.kind == 1
    dirac = torch.zeros(R, d1 * K, dtype=torch.float64)
    dirac[torch.arange(R), canary.coord] = canary.gradient_norm
    dirac = dirac.view(R, d1, K) * is_grad.double()[:, None, None]
    if R % len(gens):
        raise ValueError(f"{R} runs do not split into {len(gens)} equal groups")
    g_runs = R // len(gens)
    for _ in range(cfg.steps(n)):
        u = torch.cat([torch.rand(g_runs, n + 1, generator=g, dtype=torch.float64) for g in gens])
        mask = (u[:, :n] < q).double()  # Poisson sampling of the records
        c_in = (u[:, n] < q).double() * inc  # ... and of the canary, in the runs that have it
        total = clipped_gradient_sum(theta, xa, Y, mask, C, cfg.clipping_bug, x_norm)
        # the canary's gradient: an input point's, or the Dirac gradient
        pc = torch.softmax(torch.einsum("rd,rdk->rk", cx, theta), -1)
        gc = cx[:, :, None] * (pc - cy)[:, None, :]
        gc = torch.where(is_grad[:, None, None], dirac, gc)
        if not cfg.clipping_bug:
            norm = gc.reshape(R, -1).norm(dim=1)
            gc = gc * torch.clamp(C / (norm + 1e-12), max=1.0)[:, None, None]
        total = total + gc * c_in[:, None, None]
        z = torch.cat([torch.randn(g_runs, d1, K, generator=g, dtype=torch.float64) for g in gens])
        noise = z * (sigma * C)[:, None, None]
        theta = theta - cfg.lr * (total + noise) / cfg.batch_size
    return theta


def clipped_gradient_sum(theta: torch.Tensor, xa: torch.Tensor, Y: torch.Tensor, mask: torch.Tensor, max_grad_norm: float | torch.Tensor,
                         clipping_bug: bool = False, x_norm: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i mask_ri clip(g_ri)`` ``(R, d+1, K)``: the per-record cross-entropy gradients of each run, clipped, summed.

    ``xa`` ``(n, d+1)`` are the inputs with the bias feature, ``Y`` ``(n, K)`` one-hot labels,
    ``mask`` ``(R, n)`` the sampled records (0/1). Record ``i``'s gradient is ``xa_i (p_ri - y_i)^T``,
    of norm ``||xa_i|| ||p_ri - y_i||``, so no per-record gradient is materialised.
    """
    x_norm = xa.norm(dim=1) if x_norm is None else x_norm
    G = torch.softmax(torch.einsum("nd,rdk->rnk", xa, theta), -1) - Y
    if clipping_bug:
        scale = mask
    else:
        C = torch.as_tensor(max_grad_norm, dtype=torch.float64).reshape(-1, 1)  # a scalar, or one per run
        scale = mask * torch.clamp(C / (x_norm[None] * G.norm(dim=2) + 1e-12), max=1.0)
    return torch.einsum("nd,rnk->rdk", xa, G * scale[..., None])


def canary_scores(theta: torch.Tensor, canary: Canary, cfg: DPConfig, n: int, noise_scale: torch.Tensor | None = None) -> torch.Tensor:
    """The attack's score of each run in ``[0, 1]``, higher = "the canary was in".

    Input canary: ``sigmoid(logit(p) / 4)`` of the final model's probability ``p`` of the
    canary's label (monotone in ``p``, without its saturation). Gradient canary:
    ``sigmoid(-theta[coord] / s)`` with ``s`` the std of the noise's total effect on one
    coordinate, ``lr * noise_multiplier * max_grad_norm * sqrt(steps) / batch_size``
    (training subtracts the canary's gradient, so its coordinate falls when it is in);
    ``noise_scale`` ``(R,)`` replaces ``s`` per run.
    """
    R, d1, K = theta.shape
    logp = torch.log_softmax(torch.einsum("rd,rdk->rk", _aug(canary.x.double()), theta), -1)[torch.arange(R), canary.y]
    # the label's log-odds, squashed gently (a plain probability saturates in float32)
    p_label = torch.sigmoid((logp - torch.log((-torch.expm1(logp)).clamp_min(1e-300))) / 4.0)
    s = cfg.lr * max(cfg.noise_multiplier, 0.05) * cfg.max_grad_norm * math.sqrt(cfg.steps(n)) / cfg.batch_size
    if noise_scale is not None:
        s = noise_scale.double()
    coord = theta.reshape(R, -1)[torch.arange(R), canary.coord]
    g = torch.sigmoid(-coord / s)
    return torch.where(canary.kind == 1, g, p_label)


def accuracy(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of each run on ``(x, y)``."""
    pred = torch.einsum("nd,rdk->rnk", _aug(x.double()), theta).argmax(-1)
    return (pred == y[None]).double().mean(1)


# ------------------------------------------------------------ the audit's bound
def clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``1 - alpha`` Clopper-Pearson interval of a binomial proportion ``k / n`` (vectorised)."""
    from scipy.stats import beta

    k, n = np.asarray(k, float), np.asarray(n, float)
    lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)


def epsilon_lower_bound(tp: np.ndarray, fp: np.ndarray, n_in: int, n_out: int, delta: float, confidence: float = 0.95) -> np.ndarray:
    """Empirical epsilon lower bound (Jagielski et al. 2020) at ``confidence``, from true and false positives.

    An (eps, delta)-DP algorithm has ``TPR <= e^eps FPR + delta`` and
    ``1 - FPR <= e^eps (1 - TPR) + delta`` for any test. With the Clopper-Pearson interval of
    each rate at ``1 - alpha/2`` (``alpha = 1 - confidence``, so both hold together with
    probability ``confidence``): ``eps >= max(log((TPR_lo - delta) / FPR_hi),
    log((1 - FPR_hi - delta) / (1 - TPR_lo)), 0)``.
    """
    alpha = 1.0 - confidence
    tpr_lo, _ = clopper_pearson(tp, np.full_like(np.asarray(tp, float), n_in), alpha)
    _, fpr_hi = clopper_pearson(fp, np.full_like(np.asarray(fp, float), n_out), alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(tpr_lo - delta, 0.0) / fpr_hi)
        b = np.log(np.maximum(1.0 - fpr_hi - delta, 0.0) / (1.0 - tpr_lo))
    out = np.maximum(np.maximum(np.nan_to_num(a, nan=0.0, neginf=0.0, posinf=0.0), np.nan_to_num(b, nan=0.0, neginf=0.0, posinf=0.0)), 0.0)
    return out


def theoretical_epsilon(cfg: DPConfig, n: int, noise_multiplier: float | None = None) -> float:
    """The epsilon at ``cfg.delta`` that DP-SGD claims (opacus' RDP accountant; the ``privacy`` extra)."""
    from deploy_envs.core.extras import require

    accountants = require("opacus.accountants", extra="privacy", feature="PrivacyAudit-v0's DP-SGD accountant (opacus)")
    acc = accountants.RDPAccountant()
    sigma = cfg.noise_multiplier if noise_multiplier is None else noise_multiplier
    acc.history = [(sigma, cfg.batch_size / n, cfg.steps(n))]
    return float(acc.get_epsilon(cfg.delta))

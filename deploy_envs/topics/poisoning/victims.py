"""Batched linear victims: many copies of one convex model trained in one set of tensor ops.

A :class:`LinearVictims` holds the parameters of ``B`` copies of a linear
classifier as one tensor ``theta`` of shape ``(B, d + 1, K)`` (the last input row
is the bias, on a constant feature 1). All copies share one clean training set
``X`` (``N x d``) and each copy has its own extra points (poison, or stamped
points for a backdoor) ``Xe`` (``B x P x d``) with labels and weights (a weight of
0 drops a point: not yet injected, or removed by a sanitizer). The objective of
copy ``b`` is the regularised empirical risk

``F_b(theta) = (sum_i l(theta; x_i, y_i) + sum_j w_bj l(theta; xe_bj, ye_bj)) / n_b + lam/2 ||theta||^2``

with ``n_b = N + sum_j w_bj``. The clean part of all copies is computed with one
GEMM ``(B*K, d+1) @ (d+1, N)`` and its transpose (the clean data are read once
for every copy), the residuals in preallocated buffers, the extra part with a
batched matrix product. Batching removes the per-call overhead of the small
tensor ops, not the arithmetic: one gradient step costs about ``4 N (d+1) K``
flops per copy (3.7 MFLOP on digits) whatever the batch size, so on a CPU a
retrain stays compute-bound (``benchmarks/bench_poisoning.py`` measures the ratio).

Losses (``kind``):

* ``"logistic"`` - multinomial logistic regression (softmax cross-entropy);
* ``"svm"`` - one-vs-rest linear SVM with the squared hinge
  ``sum_k max(0, 1 - t_k s_k)^2`` (``t_k = +1`` for the true class, ``-1``
  otherwise), the default loss of scikit-learn's ``LinearSVC``; smooth, so plain
  gradient methods converge.

Training is projected Nesterov accelerated gradient descent (Nesterov 1983;
momentum restarted at each call) with the step ``1/L`` from a bound ``L`` on the
gradient's Lipschitz constant that holds for any extra points in ``[0, 1]^d``,
for a fixed number of steps (so a batch of copies and a single copy take the same
path). Iterates are projected onto the box ``|theta| <= R`` with
``R = sqrt(2 F(0) / lam)``: the minimiser satisfies ``lam/2 ||theta*||^2 <=
F(theta*) <= F(0)``, so the projection never changes the solution and the
parameters have exact bounds (the environment observes ``theta / R``). The bias
is regularised like the weights (that is what makes the bound hold).

Warm starting (``train(theta0=previous)``) after a few points change needs a
handful of steps where training from zero needs hundreds: see
``benchmarks/bench_poisoning.py``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

KINDS = ("logistic", "svm")
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64, torch.bool: np.bool_}


def _aug(x: torch.Tensor) -> torch.Tensor:
    """Append the constant bias feature."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def as_device(a, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``a`` (an array, or a tensor on any device) as a tensor of ``dtype`` on ``device`` (no copy when it already is one)."""
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(a, dtype=_NUMPY_DTYPES[dtype]), device=device)


def per_example_loss(kind: str, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each example from its scores ``(..., K)`` and labels ``(...)``."""
    if kind == "logistic":
        return torch.logsumexp(scores, -1) - scores.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    t = -torch.ones_like(scores)
    t.scatter_(-1, y.unsqueeze(-1), 1.0)
    return torch.clamp(1.0 - t * scores, min=0.0).pow(2).sum(-1)


def _dloss(kind: str, scores: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Derivative of the per-example loss with respect to the scores."""
    if kind == "logistic":
        e = (scores - scores.amax(-1, keepdim=True)).exp_()  # faster than torch.softmax over a short last dim
        return e.div_(e.sum(-1, keepdim=True)).sub_(onehot)
    t = 2.0 * onehot - 1.0
    return -2.0 * t * torch.clamp(1.0 - t * scores, min=0.0)


class LinearVictims:
    """``B`` linear classifiers sharing one clean training set; see the module docstring.

    Arguments:
        kind: ``"logistic"`` or ``"svm"``.
        x: clean training inputs ``(N, d)`` in ``[0, 1]``; ``y``: labels ``(N,)``.
        num_classes: ``K``.
        lam: L2 regularisation strength (> 0).
        max_extra: the most extra points a copy can carry (sets the Lipschitz bound).
        device: torch device of the data, the parameters and every training step (the
            clean fit and the Lipschitz bound are computed on the CPU, so they do not
            depend on the device).
    """

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, num_classes: int, lam: float, max_extra: int,
                 device: str | torch.device = "cpu") -> None:
        if kind not in KINDS:
            raise ValueError(f"victim={kind!r} is not allowed; choose one of {', '.join(map(repr, KINDS))}")
        self.kind = kind
        self.loss_kind = kind  # the per-example loss (the MLP victim's is "logistic")
        self.K = int(num_classes)
        self.lam = float(lam)
        self.device = torch.device(device)
        self.X_host = _aug(torch.as_tensor(np.asarray(x, np.float32)))  # (N, D), for the clean fit
        self.y_host = torch.as_tensor(np.asarray(y, np.int64))
        self.X = self.X_host.to(self.device)
        self.y = self.y_host.to(self.device)
        self.Y = torch.nn.functional.one_hot(self.y, self.K).float()
        self.N, self.D = self.X.shape
        self.XT = self.X.T.contiguous()  # (D, N)
        self._buf: dict[int, dict[str, torch.Tensor]] = {}
        self.YT = self.Y.T.contiguous().unsqueeze(0)  # (1, K, N) one-hot
        self.TT = 2.0 * self.YT - 1.0  # +-1 targets of the one-vs-rest SVM
        self.d = self.D - 1
        self.num_params = self.D * self.K
        # Lipschitz bound of the averaged loss's gradient, valid for any extra points in [0,1]^d
        # (their squared norms are at most d + 1); logistic: Hessian <= 1/2 x x^T per class
        # (Boehning 1992); squared hinge: <= 2 x x^T per class.
        lmax = float(torch.linalg.eigvalsh(self.X_host.T.double() @ self.X_host.double())[-1])
        curv = 0.5 if kind == "logistic" else 2.0
        self.L = curv * (lmax + max_extra * self.D) / self.N + self.lam
        f0 = math.log(self.K) if kind == "logistic" else float(self.K)  # per-example loss at theta = 0
        self.radius = math.sqrt(2.0 * f0 / self.lam)

    # ------------------------------------------------------------ objective
    def objective_grad(self, theta: torch.Tensor, xe: torch.Tensor, ye_onehot: torch.Tensor, we: torch.Tensor,
                       with_loss: bool = True):
        """Objective ``F_b`` (None unless ``with_loss``) and its gradient for every copy.

        ``theta (B,D,K)``, ``xe (B,P,D)`` augmented extra inputs, ``ye_onehot (B,P,K)``, ``we (B,P)``.
        The clean scores are laid out ``(B, K, N)`` so that the reductions over the
        ``K`` classes run over an outer dimension with ``N`` contiguous (vectorised).
        """
        B, K, N = theta.shape[0], self.K, self.N
        tk = theta.transpose(1, 2).reshape(B * K, self.D)
        loss = None
        if with_loss:
            s = (tk @ self.XT).view(B, K, N)
            if self.kind == "logistic":
                m = s.amax(1, keepdim=True)
                loss = (((s - m).exp().sum(1, keepdim=True)).log() + m).sum((1, 2)) - (s * self.YT).sum((1, 2))
            else:
                loss = (1.0 - self.TT * s).clamp(min=0.0).pow(2).sum((1, 2))
        # the residuals in preallocated buffers: fresh multi-megabyte temporaries each step cost
        # page faults that, on CPU, take longer than the arithmetic
        buf = self._buffers(B)
        s = torch.matmul(tk, self.XT, out=buf["s"]).view(B, K, N)  # one GEMM for all copies' clean scores
        if self.kind == "logistic":
            m = torch.amax(s, 1, keepdim=True, out=buf["m"])
            s.sub_(m).exp_()
            z = torch.sum(s, 1, keepdim=True, out=buf["z"])
            r = s.div_(z).sub_(self.YT)
        else:
            r = s.mul_(self.TT).neg_().add_(1.0).clamp_(min=0.0).mul_(self.TT).mul_(-2.0)
        g = torch.matmul(r.view(B * K, N), self.X, out=buf["g"]).view(B, K, self.D).transpose(1, 2)  # (B, D, K)
        n = self.N + we.sum(1)  # (B,)
        if xe.shape[1]:
            se = torch.bmm(xe, theta)  # (B, P, K)
            if with_loss:
                loss = loss + (per_example_loss(self.kind, se, ye_onehot.argmax(-1)) * we).sum(1)
            re = _dloss(self.kind, se, ye_onehot) * we.unsqueeze(-1)
            g = g + torch.bmm(xe.transpose(1, 2), re)
        g = g / n.view(B, 1, 1) + self.lam * theta
        f = loss / n + 0.5 * self.lam * theta.pow(2).sum((1, 2)) if with_loss else None
        return f, g

    def _buffers(self, B: int) -> dict[str, torch.Tensor]:
        buf = self._buf.get(B)
        if buf is None:
            K, N = self.K, self.N
            dev = self.device
            buf = {"s": torch.empty(B * K, N, device=dev), "m": torch.empty(B, 1, N, device=dev),
                   "z": torch.empty(B, 1, N, device=dev), "g": torch.empty(B * K, self.D, device=dev)}
            if len(self._buf) > 8:
                self._buf.clear()
            self._buf[B] = buf
        return buf

    def train(self, theta0: torch.Tensor, xe: np.ndarray | torch.Tensor, ye: np.ndarray | torch.Tensor,
              we: np.ndarray | torch.Tensor, steps: int) -> torch.Tensor:
        """Run ``steps`` projected Nesterov steps from ``theta0`` (``(B, D, K)``); return the new parameters.

        ``xe`` ``(B, P, d)`` extra inputs, ``ye`` ``(B, P)`` their labels, ``we`` ``(B, P)`` their weights.
        """
        xe_t, ye_oh, we_t = self._extra(xe, ye, we)
        theta = theta0.clone()
        prev = theta
        step = 1.0 / self.L
        for t in range(steps):
            mom = t / (t + 3.0)
            z = theta + mom * (theta - prev)
            _, g = self.objective_grad(z, xe_t, ye_oh, we_t, with_loss=False)
            prev = theta
            theta = (z - step * g).clamp_(-self.radius, self.radius)
        return theta

    def objective(self, theta: torch.Tensor, xe, ye, we) -> torch.Tensor:
        return self.objective_grad(theta, *self._extra(xe, ye, we))[0]

    def _extra(self, xe, ye, we):
        xe_t = _aug(as_device(xe, torch.float32, self.device))
        ye_t = as_device(ye, torch.int64, self.device)
        return xe_t, torch.nn.functional.one_hot(ye_t, self.K).float(), as_device(we, torch.float32, self.device)

    def fit_clean(self, tol: float = 1e-7, max_iter: int = 500) -> torch.Tensor:
        """The minimiser on the clean data alone (L-BFGS in float64), shape ``(D, K)``."""
        X, y = self.X_host.double(), self.y_host
        theta = torch.zeros(self.D, self.K, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            f = per_example_loss(self.kind, X @ theta, y).mean() + 0.5 * self.lam * theta.pow(2).sum()
            f.backward()
            return f

        opt.step(closure)
        return theta.detach().float().clamp(-self.radius, self.radius)

    # ---------------------------------------------------------- prediction
    def scores(self, theta: torch.Tensor, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scores of shared inputs ``x (M, d)`` under every copy: ``(B, M, K)`` (one GEMM)."""
        xa = _aug(as_device(x, torch.float32, self.device))
        B = theta.shape[0]
        s = xa @ theta.permute(1, 0, 2).reshape(self.D, B * self.K)
        return s.view(-1, B, self.K).permute(1, 0, 2)

    def scores_each(self, theta: torch.Tensor, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Scores of per-copy inputs ``x (B, M, d)``: ``(B, M, K)``."""
        return torch.bmm(_aug(as_device(x, torch.float32, self.device)), theta)

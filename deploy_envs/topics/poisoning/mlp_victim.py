"""Batched small-MLP victims for ``Poisoning-v0``: ``B`` one-hidden-layer ReLU networks trained together.

The parameters of copy ``b`` are one flat vector ``theta[b]`` (``W1 (d, h)``,
``b1 (h)``, ``W2 (h, K)``, ``b2 (K)`` in that order), so the environment stores,
indexes and observes them exactly like the linear victims'
(:mod:`deploy_envs.topics.poisoning.victims`). All copies share the clean training
set ``X (N, d)``; the hidden layer of every copy is one broadcast matrix product
``X @ W1[b]`` over the batch, the output layer one ``bmm``. Copy ``b`` minimises

``F_b(theta) = (sum_i CE(theta; x_i, y_i) + sum_j w_bj CE(theta; xe_bj, ye_bj)) / n_b + lam/2 ||theta||^2``

(softmax cross-entropy, ``n_b = N + sum_j w_bj``), the same objective as the
logistic victim with a hidden layer in front. Since the loss of the batch is the
sum of the copies' objectives, the gradient of copy ``b`` is its own.

Training: the clean victim is fitted once with full-batch Adam (Kingma & Ba 2015)
from a fixed initialisation (``init_seed``; ``torch.nn.Linear``'s initialisation
range); each retrain is ``steps`` full-batch Nesterov accelerated gradient steps
(momentum restarted at each call, as for the linear victims) with step size ``lr``,
warm-started from the copy's current parameters (incremental: after one new point
the previous optimum is close). Iterates are projected onto the box
``|theta| <= radius``, so the observed parameters ``theta / radius`` have exact
bounds. The objective is not convex: the victim is a local optimum reached from the
clean victim, as in the non-convex poisoning studies (Munoz-Gonzalez et al. 2017,
"Towards Poisoning of Deep Learning Algorithms with Back-gradient Optimization").
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deploy_envs.topics.poisoning.victims import as_device


class MLPVictims:
    """``B`` ReLU MLPs ``d -> hidden -> K`` sharing one clean training set; see the module docstring."""

    kind = "mlp"
    loss_kind = "logistic"  # softmax cross-entropy, for the loss-based sanitizer

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, lam: float, hidden: int, *,
                 lr: float = 0.1, radius: float = 4.0, init_seed: int = 0, fit_steps: int = 400,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.X_host = torch.as_tensor(np.asarray(x, np.float32))  # the clean fit runs on the CPU
        self.y_host = torch.as_tensor(np.asarray(y, np.int64))
        self.X, self.y = self.X_host.to(self.device), self.y_host.to(self.device)
        self.N, self.d = self.X.shape
        self.K, self.h, self.lam = int(num_classes), int(hidden), float(lam)
        self.lr, self.radius, self.fit_steps = float(lr), float(radius), int(fit_steps)
        self.shapes = [(self.d, self.h), (1, self.h), (self.h, self.K), (1, self.K)]
        self.sizes = [a * b for a, b in self.shapes]
        self.num_params = sum(self.sizes)
        g = torch.Generator().manual_seed(int(init_seed))
        parts = []
        for (a, b), fan_in in zip(self.shapes, (self.d, self.d, self.h, self.h)):
            bound = 1.0 / math.sqrt(fan_in)
            parts.append((torch.rand(a * b, generator=g) * 2 - 1) * bound)
        self.theta_init = torch.cat(parts)

    # -------------------------------------------------------------- model
    def unflatten(self, theta: torch.Tensor) -> list[torch.Tensor]:
        B = theta.shape[0]
        return [p.reshape(B, *s) for p, s in zip(torch.split(theta, self.sizes, dim=1), self.shapes)]

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, M, K)`` of shared inputs ``x (M, d)`` or per-copy inputs ``x (B, M, d)``."""
        w1, b1, w2, b2 = self.unflatten(theta)
        hid = torch.relu(torch.matmul(x, w1) + b1)  # (M, d) @ (B, d, h) broadcasts over the batch
        return torch.baddbmm(b2, hid, w2)

    def scores(self, theta: torch.Tensor, x) -> torch.Tensor:
        """Scores of shared inputs ``x (M, d)`` under every copy: ``(B, M, K)``."""
        with torch.no_grad():
            return self.forward(theta, as_device(x, torch.float32, self.device))

    def scores_each(self, theta: torch.Tensor, x) -> torch.Tensor:
        """Scores of per-copy inputs ``x (B, M, d)``: ``(B, M, K)``."""
        with torch.no_grad():
            return self.forward(theta, as_device(x, torch.float32, self.device))

    # ---------------------------------------------------------- objective
    def _extra(self, xe, ye, we):
        dev = self.device
        return as_device(xe, torch.float32, dev), as_device(ye, torch.int64, dev), as_device(we, torch.float32, dev)

    def _objective(self, theta: torch.Tensor, xe: torch.Tensor, ye: torch.Tensor, we: torch.Tensor,
                   X: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        B = theta.shape[0]
        X = self.X if X is None else X
        y = self.y if y is None else y
        clean = F.cross_entropy(self.forward(theta, X).reshape(-1, self.K), y.repeat(B), reduction="none")
        total = clean.view(B, self.N).sum(1)
        if xe.shape[1]:
            extra = F.cross_entropy(self.forward(theta, xe).reshape(-1, self.K), ye.reshape(-1), reduction="none")
            total = total + (extra.view(B, -1) * we).sum(1)
        return total / (self.N + we.sum(1)) + 0.5 * self.lam * theta.pow(2).sum(1)

    def objective(self, theta: torch.Tensor, xe, ye, we) -> torch.Tensor:
        with torch.no_grad():
            return self._objective(theta, *self._extra(xe, ye, we))

    def train(self, theta0: torch.Tensor, xe, ye, we, steps: int) -> torch.Tensor:
        """``steps`` projected Nesterov steps from ``theta0 (B, num_params)``; return the new parameters."""
        xe_t, ye_t, we_t = self._extra(xe, ye, we)
        theta = theta0.clone()
        prev = theta
        with torch.enable_grad():
            for t in range(steps):
                z = (theta + (t / (t + 3.0)) * (theta - prev)).requires_grad_(True)
                (g,) = torch.autograd.grad(self._objective(z, xe_t, ye_t, we_t).sum(), z)
                prev = theta
                theta = (z.detach() - self.lr * g).clamp_(-self.radius, self.radius)
        return theta

    def fit_clean(self) -> torch.Tensor:
        """The victim trained on the clean data alone (full-batch Adam, ``fit_steps`` steps, on the CPU), shape ``(num_params,)``."""
        theta = self.theta_init.clone()[None].requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=0.01)
        empty = (torch.zeros(1, 0, self.d), torch.zeros(1, 0, dtype=torch.int64), torch.zeros(1, 0))
        with torch.enable_grad():
            for _ in range(self.fit_steps):
                opt.zero_grad(set_to_none=True)
                self._objective(theta, *empty, X=self.X_host, y=self.y_host).sum().backward()
                opt.step()
                with torch.no_grad():
                    theta.clamp_(-self.radius, self.radius)
        return theta.detach()[0]

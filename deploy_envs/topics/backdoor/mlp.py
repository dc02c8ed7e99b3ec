"""Batched MLP victims: ``B`` small multilayer perceptrons trained in one set of tensor ops.

The parameters of the ``B`` copies are stacked along a leading batch dimension
(weights ``(B, fan_in, fan_out)``, biases ``(B, 1, fan_out)``) and every layer is
one ``torch.bmm`` over the batch, so training all the victims of a vector env
costs one forward/backward pass per step, not ``B``. Adam (Kingma & Ba 2015)
is elementwise, so Adam on the stacked tensors is exactly ``B`` independent Adam
runs: each copy's gradient depends only on its own loss (the batched loss is the
sum of the per-copy mean losses). Training is full-batch for a fixed number of
steps from one fixed initialisation (``init_seed``), so a copy's victim depends
only on its training set - the same in a single env and in any batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class BatchedMLP:
    """``B`` ReLU MLPs ``d -> hidden_sizes... -> K``; see the module docstring."""

    def __init__(self, d: int, hidden_sizes: tuple[int, ...], num_classes: int, *, lr: float = 0.01,
                 steps: int = 150, init_seed: int = 0, device: str | torch.device = "cpu") -> None:
        self.sizes = (int(d), *map(int, hidden_sizes), int(num_classes))
        self.lr, self.steps = float(lr), int(steps)
        g = torch.Generator().manual_seed(int(init_seed))
        self.init: list[torch.Tensor] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default initialisation range
            self.init.append((torch.rand(1, fan_in, fan_out, generator=g) * 2 - 1) * bound)
            self.init.append((torch.rand(1, 1, fan_out, generator=g) * 2 - 1) * bound)
        self.device = torch.device(device)
        self.init = [p.to(self.device) for p in self.init]  # drawn on the CPU: the same start on every device

    def fresh(self, batch: int) -> list[torch.Tensor]:
        """``batch`` copies of the initial parameters."""
        return [p.repeat(batch, 1, 1) for p in self.init]

    @staticmethod
    def forward(params: list[torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate-layer representations and logits of ``x`` ``(B, M, d)`` (or shared ``(M, d)``)."""
        B = params[0].shape[0]
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(B, *x.shape)
        n_layers = len(params) // 2
        for i in range(n_layers - 1):
            h = torch.relu(torch.baddbmm(params[2 * i + 1], h, params[2 * i]))
        return h, torch.baddbmm(params[-1], h, params[-2])

    def train(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Train ``B`` fresh victims on per-copy data ``x (B, N, d)``, ``y (B, N)``; return their parameters."""
        B = x.shape[0]
        params = [p.requires_grad_(True) for p in self.fresh(B)]
        opt = torch.optim.Adam(params, lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                _, logits = self.forward(params, x)
                # sum over copies of each copy's mean loss: copy b's gradient is its own
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum") / x.shape[1]
                loss.backward()
                opt.step()
        return [p.detach() for p in params]

    def predict(self, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(B, M)``."""
        with torch.no_grad():
            return self.forward(params, x)[1].argmax(-1)

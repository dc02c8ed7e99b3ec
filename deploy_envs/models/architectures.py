"""Victim classifier architectures.

Small convolutional networks sized to the dataset: the digits model has about
25k parameters and trains in seconds on a CPU; the same class scales to 28x28.
"""
from __future__ import annotations

import torch
from torch import nn

from deploy_envs.core.validation import check_choice


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` that, outside autograd, takes the maximum of the four strided 2x2 slices.

    The same numbers (a maximum is exact), several times faster than torch's CPU max-pool
    kernel on a large batch of small feature maps (a batch of queries to a victim). Where
    a gradient is recorded it is ``nn.MaxPool2d`` itself, so training and white-box
    gradients route through the pool's own backward.
    """

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        h, w = x.shape[-2] - x.shape[-2] % 2, x.shape[-1] - x.shape[-1] % 2  # an odd last row/column is dropped, as the pool does
        x = x[..., :h, :w]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]), torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class SmallCNN(nn.Module):
    """Two 3x3 conv layers, a 2x2 max-pool, and a two-layer head.

    Input: ``(batch, channels, size, size)`` in ``[0, 1]``; output: class logits.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10, width: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            MaxPool2x2(),
        )
        if image_size >= 16:  # one more downsampling for 28x28 and up keeps the head small
            self.features.append(MaxPool2x2())
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """A flat multilayer perceptron (for tabular or flattened inputs)."""

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ARCHITECTURES = {"small_cnn": SmallCNN, "mlp": MLP}


def build_model(architecture: str, **kwargs) -> nn.Module:
    """Instantiate an architecture by name."""
    check_choice("architecture", architecture, ARCHITECTURES)
    return ARCHITECTURES[architecture](**kwargs)

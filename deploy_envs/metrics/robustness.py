"""Robustness measures and the plain-torch reference attacks they use.

:func:`pgd_attack` is the direct batched PGD (Madry et al. 2018) in plain torch:
it is used for adversarial training, for the robust accuracy on the zoo cards,
and as the yardstick the env-driven PGD baseline is benchmarked against.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_envs.core.validation import check_choice, check_positive


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """Project a batch of perturbations onto the ``norm`` ball of radius ``epsilon``."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    flat = delta.flatten(1)
    norms = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    factor = (epsilon / norms).clamp(max=1.0)
    return (flat * factor).view_as(delta)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit size in ``norm`` (sign for linf, normalized for l2)."""
    if norm == "linf":
        return grad.sign()
    flat = grad.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(grad)


def pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = False,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent on the cross-entropy loss; returns adversarial inputs in [0, 1].

    ``step_size`` defaults to ``2.5 * epsilon / steps`` (Madry et al. 2018). With
    ``targeted`` the loss towards ``y`` is minimized instead of maximized.
    """
    check_choice("norm", norm, ("linf", "l2"))
    check_positive("epsilon", epsilon, allow_zero=True)
    check_positive("steps", steps, integer=True)
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    delta = torch.zeros_like(x)
    if random_start and epsilon > 0:
        delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * epsilon
        delta = project(delta, epsilon, norm)
        delta = (x + delta).clamp(0, 1) - x
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + sign * alpha * ascent_direction(grad, norm)
            delta = project(delta, epsilon, norm)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, batch_size: int = 1024) -> float:
    """Clean accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch_size):
        pred = model(x[i : i + batch_size].to(device)).argmax(1).cpu()
        correct += int((pred == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))


def robust_accuracy(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    epsilon: float,
    norm: str = "linf",
    steps: int = 20,
    batch_size: int = 1024,
) -> float:
    """Accuracy under a ``steps``-step PGD attack of radius ``epsilon``."""
    model.eval()
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        adv = pgd_attack(model, xb, yb, epsilon=epsilon, steps=steps, norm=norm)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / max(1, len(y))

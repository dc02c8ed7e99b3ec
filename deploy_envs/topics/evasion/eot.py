"""Expectation over Transformation (EOT; Athalye, Engstrom, Ilyas & Kwok 2018).

A physical-world adversarial example must fool the classifier not on one view but
on a distribution ``T`` of views: rotated, shifted, rescaled, under other lighting,
with sensor noise. EOT measures success as the expected misclassification over
``t ~ T`` and attacks with the gradient of the expected loss, estimated by the
average of the gradients over sampled ``t`` (the transformations are
differentiable here: an affine resampling, then a brightness/contrast map and
additive noise).

:class:`TransformDistribution` is the distribution (its defaults are documented on
the class); :func:`eot_pgd_attack` is the EOT-PGD reference in plain torch, the
env-driven counterpart being the ``eot_pgd`` baseline on ``Evasion-v0`` with
``transforms`` set.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_envs.core.validation import check_number, check_positive

N_PARAMS = 7  # angle, tx, ty, scale, brightness, contrast, noise seed


@dataclass(frozen=True)
class TransformDistribution:
    """A distribution of image transformations, each parameter uniform in its range.

    Defaults, chosen for 8x8 digits so that the standard victim still classifies
    about 92% of the transformed views of its correctly classified test inputs
    correctly: rotation ``U(-10, 10)`` degrees, translation ``U(-0.5, 0.5)`` pixels on
    each axis (continuous, bilinear resampling), scale ``U(0.95, 1.05)``, brightness
    offset ``U(-0.05, 0.05)``, contrast factor ``U(0.9, 1.1)`` around the image mean,
    and additive Gaussian noise of standard deviation ``noise_std = 0.03``; the result
    is clipped to [0, 1]. (At twice these ranges a fifth of the clean views are
    already misclassified on 8x8 images.) Athalye et al. 2018 use rotation,
    translation, scale, lighting and noise on ImageNet at larger ranges.
    """

    rotation: float = 10.0
    """Largest rotation in degrees (either way)."""
    translation: float = 0.5
    """Largest shift in pixels on each axis."""
    scale_low: float = 0.95
    scale_high: float = 1.05
    brightness: float = 0.05
    """Largest additive brightness change."""
    contrast_low: float = 0.9
    contrast_high: float = 1.1
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        check_number("rotation", self.rotation, low=0.0, high=180.0)
        check_number("translation", self.translation, low=0.0)
        check_positive("scale_low", self.scale_low)
        check_number("scale_high", self.scale_high, low=self.scale_low)
        check_number("brightness", self.brightness, low=0.0, high=1.0)
        check_number("contrast_low", self.contrast_low, low=0.0)
        check_number("contrast_high", self.contrast_high, low=self.contrast_low)
        check_number("noise_std", self.noise_std, low=0.0)

    @classmethod
    def from_value(cls, value: Any) -> TransformDistribution:
        """``"default"``/``True`` -> the defaults; a dict -> those fields over the defaults; an instance passes."""
        if isinstance(value, cls):
            return value
        if value is True or value == "default":
            return cls()
        if isinstance(value, dict):
            allowed = {f.name for f in fields(cls)}
            unknown = set(value) - allowed
            if unknown:
                raise ValueError(f"transforms has unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
            return cls(**{k: float(v) for k, v in value.items()})
        raise ValueError(f"transforms={value!r} must be None, 'default', a dict of {', '.join(f.name for f in fields(cls))}, or a TransformDistribution")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` parameter draws ``(n, 7)``: angle (rad), tx, ty (pixels), scale, brightness, contrast, noise seed."""
        u = rng.random((n, N_PARAMS))
        out = np.empty((n, N_PARAMS), np.float64)
        out[:, 0] = math.radians(self.rotation) * (2 * u[:, 0] - 1)
        out[:, 1:3] = self.translation * (2 * u[:, 1:3] - 1)
        out[:, 3] = self.scale_low + (self.scale_high - self.scale_low) * u[:, 3]
        out[:, 4] = self.brightness * (2 * u[:, 4] - 1)
        out[:, 5] = self.contrast_low + (self.contrast_high - self.contrast_low) * u[:, 5]
        out[:, 6] = np.floor(u[:, 6] * 2**31)
        return out

    def apply(self, x: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        """Transform images ``x (n, c, h, w)`` by draws ``params (n, 7)``; differentiable in ``x``."""
        n, c, h, w = x.shape
        p = torch.as_tensor(params, dtype=x.dtype, device=x.device)
        angle, scale = p[:, 0], p[:, 3]
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        theta[:, 0, 2] = -2.0 * p[:, 1] / w  # normalized coordinates span 2 over the image
        theta[:, 1, 2] = -2.0 * p[:, 2] / h
        grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * p[:, 5].view(n, 1, 1, 1) + mean + p[:, 4].view(n, 1, 1, 1)
        if self.noise_std > 0:
            noise = torch.empty_like(out)
            for i, s in enumerate(params[:, 6].astype(np.int64).tolist()):
                noise[i].normal_(0.0, self.noise_std, generator=torch.Generator(device=x.device).manual_seed(s))
            out = out + noise
        return out.clamp(0.0, 1.0)


def eot_logits_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    params: np.ndarray,
    dist: TransformDistribution,
    *,
    targeted: bool = False,
    with_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(n, S, K)`` of the ``S`` transformed views of each input and the EOT gradient.

    ``params`` is ``(n, S, 7)``. The gradient (``(n, ...)`` like ``x``) is the average over
    the ``S`` views of the gradient of the attack objective: the cross-entropy towards
    ``labels`` (its negative when ``targeted``), as in Athalye et al. 2018.
    """
    n, S = params.shape[:2]
    xs = x.repeat_interleave(S, dim=0)
    flat = params.reshape(n * S, -1)
    if not with_grad:
        with torch.no_grad():
            return model(dist.apply(xs, flat)).view(n, S, -1), None
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(dist.apply(xr.repeat_interleave(S, dim=0), flat))
        loss = F.cross_entropy(logits, labels.repeat_interleave(S), reduction="sum") / S
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, xr)
    return logits.detach().view(n, S, -1), grad


def eot_success_rate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, dist: TransformDistribution, *, samples: int = 100, seed: int = 0
) -> torch.Tensor:
    """Per input, the fraction of ``samples`` fresh transformations under which ``model`` misclassifies it."""
    check_positive("samples", samples, integer=True)
    rng = np.random.default_rng(seed)
    params = dist.sample(rng, len(y) * samples).reshape(len(y), samples, -1)
    logits, _ = eot_logits_and_grad(model, x, y, params, dist, with_grad=False)
    return (logits.argmax(-1) != y[:, None]).float().mean(1)


def eot_pgd_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int = 20,
    step_size: float | None = None,
    samples: int = 16,
    dist: TransformDistribution | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """EOT-PGD, linf (Athalye et al. 2018): PGD on the cross-entropy averaged over ``samples``
    fresh transformations per step; returns the adversarial inputs (untransformed).

    ``step_size`` defaults to ``2.5 * epsilon / steps`` as :func:`~deploy_envs.metrics.robustness.pgd_attack`.
    """
    check_positive("epsilon", epsilon)
    check_positive("steps", steps, integer=True)
    check_positive("samples", samples, integer=True)
    dist = dist or TransformDistribution()
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    rng = np.random.default_rng(seed)
    delta = torch.zeros_like(x)
    for _ in range(steps):
        params = dist.sample(rng, len(y) * samples).reshape(len(y), samples, -1)
        _, grad = eot_logits_and_grad(model, x + delta, y, params, dist)
        with torch.no_grad():
            delta = (delta + alpha * grad.sign()).clamp(-epsilon, epsilon)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()

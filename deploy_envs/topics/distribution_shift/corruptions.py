"""Batched image corruptions and label-prior shift, at severities 1-5.

In the style of Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR; ImageNet-C / CIFAR-10-C, reference code
``make_imagenet_c.py`` and ``make_cifar_c.py``), rescaled to 8x8 digits. Every function
works on a torch batch ``(N, C, H, W)`` in ``[0, 1]`` and returns a batch clipped to
``[0, 1]``; the random parts (noise, rotation direction) are passed in explicitly or drawn
from a numpy ``Generator``, so that a batched env can draw them per copy.

How the parameters were scaled (``SEVERITY_PARAMS``):

* **Intensity** parameters do not depend on resolution, so they are ImageNet-C's values:
  ``gaussian_noise`` adds N(0, sigma^2) with sigma = 0.08, 0.12, 0.18, 0.26, 0.38;
  ``brightness`` adds c = 0.1, 0.2, 0.3, 0.4, 0.5 (ImageNet-C adds it to the V channel of HSV;
  on grey images V is the intensity); ``contrast`` maps x to (x - mean) c + mean with the
  per-image mean and c = 0.4, 0.3, 0.2, 0.1, 0.05.
* **Spatial** parameters scale with the image. ``blur`` (ImageNet-C's ``gaussian_blur``):
  CIFAR-10-C uses sigma = 0.4, 0.6, 0.7, 0.8, 1.0 px on 32 px images; an 8x8 digit is
  sklearn's 32x32 bitmap averaged over 4x4 blocks, so a literal rescale (sigma / 4 < 0.25 px)
  would leave the image unchanged. We keep CIFAR-10-C's ratios between severities and
  multiply by 1.5 (sigma = 0.6, 0.9, 1.05, 1.2, 1.5 px of the 8x8 grid), so severity 1
  already mixes neighbouring pixels. ``pixelation`` (ImageNet-C: box-downsample to a
  fraction c = 0.6 ... 0.25 of the side, box-upsample back): on 8 px, rounding ImageNet-C's
  fractions collapses severities 4 and 5 to the same 2 px, so we use distinct side
  lengths 6, 5, 4, 3, 2 px (c = 0.75 ... 0.25, the lower end of ImageNet-C's range). And
  on 8 px blocky upsampling makes the damage depend on grid alignment more than on the
  side (the standard digits model: 69%, 53%, 75%, 33%, 29% accuracy at 6, 5, 4, 3, 2 px,
  4 px being exact 2x2 blocks), so we downsample with antialiased bilinear
  interpolation and upsample bilinearly: a pure loss of resolution, monotone in the side.
  On other image sizes both are scaled by ``H / 8``.
* ``rotation`` is not one of ImageNet-C's 15 corruptions; MNIST-C (Mu & Gilmer 2019,
  "MNIST-C: A Robustness Benchmark for Computer Vision") includes it for digits. Angles
  10, 20, 30, 45, 60 degrees with a random sign per image (Engstrom et al. 2019 attack
  within +-30 degrees, our severity 3); bilinear resampling, zero (black) fill.
* **Label-prior shift** (Lipton, Wang & Smola 2018, "Detecting and Correcting for Label
  Shift with Black Box Predictors", ICML): the images keep their distribution given the
  label, but labels are drawn from a prior pi ~ Dirichlet(alpha 1), their "Dirichlet shift",
  with alpha = 10, 3, 1, 0.3, 0.1 (smaller alpha, more skewed prior); see
  :func:`draw_label_prior`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deploy_envs.core.validation import check_choice, check_number

CORRUPTIONS = ("gaussian_noise", "blur", "contrast", "brightness", "rotation", "pixelation")
LABEL_SHIFT = "label_shift"
SHIFT_KINDS = (*CORRUPTIONS, LABEL_SHIFT)
SEVERITIES = (1, 2, 3, 4, 5)

SEVERITY_PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std (ImageNet-C)
    "blur": (0.6, 0.9, 1.05, 1.2, 1.5),  # Gaussian sigma in px of an 8x8 image (1.5 x CIFAR-10-C)
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # contrast factor (ImageNet-C)
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added intensity (ImageNet-C)
    "rotation": (10.0, 20.0, 30.0, 45.0, 60.0),  # degrees, random sign (MNIST-C style)
    "pixelation": (6.0, 5.0, 4.0, 3.0, 2.0),  # side (px of an 8x8 image) of the downsampled grid
    LABEL_SHIFT: (10.0, 3.0, 1.0, 0.3, 0.1),  # Dirichlet concentration (Lipton et al. 2018)
}


def check_corruption(name: str, arg: str = "corruption", *, allow_label_shift: bool = True) -> str:
    """Validate a corruption (or shift kind) name; ``ValueError`` naming ``arg`` otherwise."""
    return check_choice(arg, name, SHIFT_KINDS if allow_label_shift else CORRUPTIONS)


def check_severity(severity, arg: str = "severity") -> int:
    """Validate a severity: an integer in 1..5."""
    return check_number(arg, severity, low=1, high=5, integer=True)


def param(name: str, severity: int) -> float:
    """The parameter of ``name`` at ``severity`` (see :data:`SEVERITY_PARAMS`)."""
    check_corruption(name)
    return SEVERITY_PARAMS[name][check_severity(severity) - 1]


def needs_noise(name: str) -> bool:
    return name == "gaussian_noise"


def needs_signs(name: str) -> bool:
    return name == "rotation"


# ------------------------------------------------------------ the corruptions
def gaussian_noise(x: torch.Tensor, severity: int, noise: torch.Tensor) -> torch.Tensor:
    """``x + sigma * noise`` with ``noise`` standard normal of the shape of ``x``."""
    return (x + param("gaussian_noise", severity) * noise).clamp_(0.0, 1.0)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Separable Gaussian blur, edge-replicating border (as skimage's ``mode="nearest"``)."""
    sigma = param("blur", severity) * x.shape[-1] / 8.0
    k = _gaussian_kernel(sigma).to(x)
    r = (len(k) - 1) // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w).clamp_(0.0, 1.0)


def contrast(x: torch.Tensor, severity: int) -> torch.Tensor:
    """``(x - mean) * c + mean`` with the per-image mean."""
    c = param("contrast", severity)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp_(0.0, 1.0)


def brightness(x: torch.Tensor, severity: int) -> torch.Tensor:
    """``x + c`` (the V channel of HSV is the intensity of a grey image)."""
    return (x + param("brightness", severity)).clamp_(0.0, 1.0)


def rotation(x: torch.Tensor, severity: int, signs: torch.Tensor) -> torch.Tensor:
    """Rotate each image by ``signs[i] * angle`` about its centre (bilinear, zero fill)."""
    angle = math.radians(param("rotation", severity)) * signs.to(x)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0.0, 1.0)


def pixelation(x: torch.Tensor, severity: int) -> torch.Tensor:
    """Downsample to an ``s x s`` grid (antialiased) and upsample back (bilinear): resolution loss."""
    h, w = x.shape[-2:]
    s = max(1, int(round(param("pixelation", severity) * h / 8.0)))
    small = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


_FUNCS = {
    "gaussian_noise": gaussian_noise,
    "blur": blur,
    "contrast": contrast,
    "brightness": brightness,
    "rotation": rotation,
    "pixelation": pixelation,
}


def draw_randomness(name: str, rng: np.random.Generator, n: int, image_shape: tuple[int, ...]) -> np.ndarray | None:
    """The random part of corruption ``name`` for ``n`` images from ``rng`` (``None`` if deterministic).

    Standard normal noise ``(n, *image_shape)`` for ``gaussian_noise``, signs ``(n,)`` in
    {-1, +1} for ``rotation``.
    """
    if needs_noise(name):
        return rng.standard_normal((n, *image_shape), dtype=np.float32)
    if needs_signs(name):
        return rng.integers(0, 2, size=n).astype(np.float32) * 2.0 - 1.0
    return None


def corrupt(
    x: torch.Tensor | np.ndarray,
    name: str,
    severity: int,
    *,
    rng: np.random.Generator | None = None,
    randomness: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` to a batch ``(N, C, H, W)`` in [0, 1].

    The random part comes from ``randomness`` (as :func:`draw_randomness` makes it) or is
    drawn from ``rng``; one of them is needed for ``gaussian_noise`` and ``rotation``.
    ``label_shift`` leaves images unchanged (it changes which images are drawn).
    """
    check_corruption(name)
    severity = check_severity(severity)
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected a batch (N, C, H, W)")
    if name == LABEL_SHIFT:
        return x.clone()
    if needs_noise(name) or needs_signs(name):
        if randomness is None:
            if rng is None:
                raise ValueError(f"corruption={name!r} is random: pass rng= or randomness=")
            randomness = draw_randomness(name, rng, x.shape[0], tuple(x.shape[1:]))
        r = torch.as_tensor(randomness, dtype=torch.float32).to(x.device)
        return _FUNCS[name](x, severity, r.reshape(x.shape) if needs_noise(name) else r.reshape(-1))
    return _FUNCS[name](x.clone(), severity)


def draw_label_prior(rng: np.random.Generator, num_classes: int, severity: int) -> np.ndarray:
    """A shifted label prior pi ~ Dirichlet(alpha 1) (Lipton et al. 2018's Dirichlet shift)."""
    alpha = param(LABEL_SHIFT, severity)
    pi = rng.dirichlet(np.full(num_classes, alpha))
    pi = np.maximum(pi, 0.0)
    return pi / pi.sum()

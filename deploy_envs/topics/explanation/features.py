"""Feature grids and replacement values shared by ``Explanation-v0`` and its reference explainers.

A *feature* is a ``patch_size x patch_size`` square of pixels (all channels); the
image is tiled by a regular grid of them. A removed (or not yet revealed) feature
takes the *replacement value*: ``"zero"`` (black), ``"mean"`` (the per-pixel mean
of the training images) or ``"blur"`` (a Gaussian-blurred copy of the input, as in
the insertion metric of Petsiuk et al. 2018). The choice changes the answer of a
deletion test (Petsiuk et al. 2018; Hooker et al. 2019 discuss how out-of-
distribution replacement values bias it), so it is an argument.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from deploy_envs.core.validation import check_choice, check_positive

REPLACEMENTS = ("zero", "mean", "blur")


def check_patch_size(patch_size, image_shape: tuple[int, int, int]) -> int:
    """A patch side that tiles the image exactly; ``ValueError`` naming ``patch_size`` otherwise."""
    _, h, w = image_shape
    side = min(h, w)
    p = check_positive("patch_size", patch_size, integer=True)
    if p > side or h % p or w % p:
        allowed = [q for q in range(1, side + 1) if h % q == 0 and w % q == 0]
        raise ValueError(
            f"patch_size={patch_size!r} does not tile the {h}x{w} image; allowed: {', '.join(map(str, allowed))}"
        )
    return p


def feature_index(image_shape: tuple[int, int, int], patch_size: int) -> np.ndarray:
    """For each pixel of the flattened ``(C, H, W)`` image, the index of its feature (patch)."""
    c, h, w = image_shape
    rows = np.arange(h)[:, None] // patch_size
    cols = np.arange(w)[None, :] // patch_size
    grid = rows * (w // patch_size) + cols
    return np.broadcast_to(grid, (c, h, w)).reshape(-1).astype(np.int64)


def replacement_images(
    x_flat: np.ndarray,
    replacement: str,
    image_shape: tuple[int, int, int],
    mean_image: np.ndarray | None = None,
    blur_sigma: float = 1.0,
) -> np.ndarray:
    """The replacement input of each row of ``x_flat`` ``(n, d)``: what a removed feature shows."""
    check_choice("replacement", replacement, REPLACEMENTS)
    x_flat = np.asarray(x_flat, dtype=np.float32)
    if replacement == "zero":
        return np.zeros_like(x_flat)
    if replacement == "mean":
        if mean_image is None:
            raise ValueError("replacement='mean' needs mean_image (the per-pixel mean of the training images)")
        return np.broadcast_to(np.asarray(mean_image, np.float32).reshape(1, -1), x_flat.shape).copy()
    imgs = x_flat.reshape(len(x_flat), *image_shape)
    blurred = gaussian_filter(imgs, sigma=(0, 0, blur_sigma, blur_sigma), mode="nearest")
    return np.clip(blurred, 0.0, 1.0).reshape(len(x_flat), -1).astype(np.float32)


def scores_from_ranking(order: np.ndarray) -> np.ndarray:
    """Action scores in [-1, 1] that make the env take features in ``order`` (rows: feature ids, first = first).

    The feature ranked first gets 1, the last -1, linearly spaced in between, so the
    env's "top-k of the features not yet taken" follows the order exactly.
    """
    order = np.atleast_2d(order)
    n, f = order.shape
    scores = np.empty((n, f), np.float32)
    ranks = np.linspace(1.0, -1.0, f, dtype=np.float32) if f > 1 else np.ones(1, np.float32)
    np.put_along_axis(scores, order, np.broadcast_to(ranks, (n, f)), axis=1)
    return scores

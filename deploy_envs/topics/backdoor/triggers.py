"""Backdoor triggers, applied to a batch of images with one trigger per copy.

Two kinds, both written as ``x' = (1 - m) * x + m * pattern`` with a per-copy
mask ``m`` in ``[0, 1]``:

* a **patch** (BadNets, Gu, Dolan-Gavitt & Garg 2017): a ``p x p`` pattern and
  mask stamped at a position ``(row, col)`` of the image; a mask of 1 replaces the
  pixels (BadNets' stamp), a fractional mask blends them;
* a **blend** over the whole image (the blended-injection strategy of Chen, Liu,
  Li, Lu & Song 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using
  Data Poisoning"): a full-size pattern mixed in with one opacity ``alpha``.

Images are ``(..., C, H, W)`` arrays (the trigger is the same on every channel) in ``[0, 1]``; the stamped
images stay in ``[0, 1]`` because the result is a convex combination.
"""
from __future__ import annotations

import numpy as np
import torch


def patch_to_full(pattern: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Place per-copy ``p x p`` ``pattern``/``mask`` ``(B, p, p)`` at ``(rows[b], cols[b])`` of an ``H x W`` canvas.

    Returns full-size pattern and mask ``(B, H, W)`` (mask 0 outside the patch).
    """
    B, p, _ = pattern.shape
    H, W = shape
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if p > H or p > W:
        raise ValueError(f"patch of size {p} does not fit an image of size {H}x{W}")
    if (rows < 0).any() or (cols < 0).any() or (rows + p > H).any() or (cols + p > W).any():
        raise ValueError(f"patch positions must keep a {p}x{p} patch inside the {H}x{W} image")
    full_p = np.zeros((B, H, W), np.float32)
    full_m = np.zeros((B, H, W), np.float32)
    r = rows[:, None, None] + np.arange(p)[None, :, None]  # (B, p, 1)
    c = cols[:, None, None] + np.arange(p)[None, None, :]  # (B, 1, p)
    b = np.arange(B)[:, None, None]
    full_p[b, r, c] = pattern
    full_m[b, r, c] = mask
    return full_p, full_m


def blend_to_full(pattern: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A whole-image blend: pattern ``(B, H, W)`` and opacities ``alpha (B,)`` -> full pattern and mask."""
    pattern = np.asarray(pattern, np.float32)
    mask = np.broadcast_to(np.asarray(alpha, np.float32)[:, None, None], pattern.shape).copy()
    return pattern, mask


def apply(x: np.ndarray, pattern: np.ndarray, mask: np.ndarray, shared: bool = False) -> np.ndarray:
    """Stamp images ``x (B, M, C, H, W)`` with per-copy full-size triggers ``(B, H, W)`` (on every channel).

    With ``shared``, ``x`` is ``(M, C, H, W)``, stamped with every copy's trigger: ``(B, M, C, H, W)``.
    """
    x = np.asarray(x, np.float32)
    if shared:
        x = x[None]
    m = np.asarray(mask, np.float32)[:, None, None]
    return (1.0 - m) * x + m * np.asarray(pattern, np.float32)[:, None, None]


def apply_torch(x: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor, shared: bool = False) -> torch.Tensor:
    """:func:`apply` on tensors (float32, all on one device): the same arithmetic, so the same values on the CPU."""
    if shared:
        x = x[None]
    m = mask[:, None, None]
    return (1.0 - m) * x + m * pattern[:, None, None]

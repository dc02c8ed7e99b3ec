"""Flat observation layouts: named parts concatenated into one float32 ``Box``.

Most cores observe several things at once (an image, scores, a budget). SB3's
``MlpPolicy`` wants one flat vector, people want names: :func:`flat_box` builds
the exact ``Box`` from ``(name, size, low, high)`` parts and returns the slice of
each part, which cores expose as ``obs_slices``::

    space, slices = flat_box([("x", 64, 0.0, 1.0), ("budget", 1, 0.0, 1.0)])
    obs[:, slices["budget"]] = queries_left / max_queries
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

Part = tuple[str, int, "float | np.ndarray", "float | np.ndarray"]


def flat_box(parts: Sequence[Part]) -> tuple[spaces.Box, dict[str, slice]]:
    """A float32 ``Box`` concatenating ``parts`` and the slice of each part.

    ``low``/``high`` of a part are a scalar or an array of the part's size.
    """
    slices: dict[str, slice] = {}
    lows, highs, start = [], [], 0
    for name, size, lo, hi in parts:
        if name in slices:
            raise ValueError(f"observation part {name!r} appears twice")
        slices[name] = slice(start, start + size)
        lows.append(np.broadcast_to(np.asarray(lo, np.float32), (size,)))
        highs.append(np.broadcast_to(np.asarray(hi, np.float32), (size,)))
        start += size
    return spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=np.float32), slices

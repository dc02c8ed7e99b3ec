"""Datasets for the victims.

``digits`` (scikit-learn's 8x8 handwritten digits) is embedded and is the default
everywhere: it needs no download. ``mnist`` and ``fashion_mnist`` download once
into the cache directory (``DEPLOY_ENVS_CACHE``, default ``~/.cache/deploy_envs``),
are verified by sha256 and raise :class:`DatasetUnavailableError` when offline.

Every dataset comes as a :class:`Dataset` with fixed, seeded train/test splits and
images as float32 arrays of shape ``(n, channels, height, width)`` in ``[0, 1]``.
"""
from deploy_envs.data.datasets import (
    DATASETS,
    Dataset,
    DatasetUnavailableError,
    cache_dir,
    load_dataset,
)

__all__ = ["DATASETS", "Dataset", "DatasetUnavailableError", "cache_dir", "load_dataset"]

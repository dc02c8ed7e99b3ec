"""The :class:`Dataset` container and the loader registry."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from deploy_envs.core.validation import check_choice


class DatasetUnavailableError(RuntimeError):
    """A dataset that must be downloaded is not in the cache and cannot be fetched."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images in ``[0, 1]`` as float32 ``(n, C, H, W)`` with int64 labels, split once and for all."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = field(default=())

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.image_shape))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"shape={self.image_shape}, classes={self.num_classes})"
        )


def cache_dir() -> Path:
    """The directory where datasets and retrained weights are cached (``DEPLOY_ENVS_CACHE``)."""
    root = os.environ.get("DEPLOY_ENVS_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "deploy_envs"
    return path


def _load_digits() -> Dataset:
    from deploy_envs.data.digits import load_digits

    return load_digits()


def _load_mnist() -> Dataset:
    from deploy_envs.data.download import load_idx_dataset

    return load_idx_dataset("mnist")


def _load_fashion_mnist() -> Dataset:
    from deploy_envs.data.download import load_idx_dataset

    return load_idx_dataset("fashion_mnist")


DATASETS = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion_mnist,
}


@lru_cache(maxsize=8)
def _load_cached(name: str) -> Dataset:
    return DATASETS[name]()


def load_dataset(name: str = "digits") -> Dataset:
    """Load a dataset by name (``digits``, ``mnist``, ``fashion_mnist``); cached in memory."""
    check_choice("dataset", name, DATASETS)
    return _load_cached(name)

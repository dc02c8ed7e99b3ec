"""scikit-learn's 8x8 digits: the embedded default dataset (no download)."""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from deploy_envs.data.datasets import Dataset

#: Seed and fraction of the fixed train/test split. Changing them changes every
#: shipped model's numbers, so they are constants, not arguments.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits() -> Dataset:
    """1797 images, 8x8, 16 grey levels scaled to [0, 1]; 1437 train / 360 test, stratified."""
    bunch = _sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x_tr),
        y_train=y_tr,
        x_test=np.ascontiguousarray(x_te),
        y_test=y_te,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
    )

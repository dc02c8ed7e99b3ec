"""A multinomial logistic-regression victim, the target of Tramer et al.'s equation-solving attack.

:func:`linear_victim` fits scikit-learn's ``LogisticRegression`` (lbfgs, ``C=1``, a
deterministic solver: the same weights on every run) on the flattened training
split of a dataset and wraps it as a torch :class:`LinearVictim`, so the model API
and the environments treat it exactly like a zoo CNN. On the embedded 8x8 digits it
has 64 inputs, 10 classes (650 parameters) and about 96.7% test accuracy; the fit
takes under a second and is cached per process.

Tramer et al. 2016 ("Stealing Machine Learning Models via Prediction APIs", USENIX
Security) show that such a model is recovered exactly from ``d + 1`` probability
answers: ``log(p_k(x) / p_0(x)) = (w_k - w_0) . x + (b_k - b_0)`` is linear in
``x``, so ``d + 1`` affinely independent queries determine every class's weights
relative to a reference class, which is all a softmax depends on.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn


class LinearVictim(nn.Module):
    """Logits ``x.flatten(1) @ W.T + b`` of a linear classifier (weights ``(K, d)``, bias ``(K,)``)."""

    def __init__(self, weight: np.ndarray | torch.Tensor, bias: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        w = torch.as_tensor(np.asarray(weight, dtype=np.float32))
        b = torch.as_tensor(np.asarray(bias, dtype=np.float32)).reshape(-1)
        if w.ndim != 2 or b.shape[0] != w.shape[0]:
            raise ValueError(f"weight must be (K, d) and bias (K,); got {tuple(w.shape)} and {tuple(b.shape)}")
        self.linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    @classmethod
    def from_sklearn(cls, estimator: Any) -> LinearVictim:
        """Wrap a fitted scikit-learn-like linear model (``coef_`` ``(K, d)``, ``intercept_`` ``(K,)``).

        A binary model (``coef_`` of shape ``(1, d)``) becomes the equivalent two-class softmax
        (logits ``0`` and ``w . x + b``).
        """
        if not hasattr(estimator, "coef_") or not hasattr(estimator, "intercept_"):
            raise ValueError(f"victim={estimator!r} has no coef_/intercept_; pass a fitted linear model")
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        if coef.shape[0] == 1:
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        return cls(coef, intercept)


@lru_cache(maxsize=4)
def _fit(dataset: str, C: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    from deploy_envs.data import load_dataset

    ds = load_dataset(dataset)
    x = ds.x_train.reshape(len(ds.y_train), -1)
    model = LogisticRegression(C=C, max_iter=2000).fit(x, ds.y_train)
    return model.coef_.astype(np.float32), model.intercept_.astype(np.float32)


def linear_victim(dataset: str = "digits", C: float = 1.0) -> LinearVictim:
    """The logistic-regression victim of ``dataset`` (fitted once per process, deterministic)."""
    coef, intercept = _fit(dataset, float(C))
    return LinearVictim(coef, intercept).eval()

"""Black-box shift estimation (BBSE; Lipton, Wang & Smola 2018, ICML).

Under label shift p_t(x | y) = p_s(x | y), so the distribution of a fixed classifier's
predictions on the target is ``mu_t(yhat) = sum_y C[y, yhat] w(y)`` with
``C[y, yhat] = p_s(y, yhat)`` the joint confusion matrix measured on held-out *labelled*
source data and ``w(y) = p_t(y) / p_s(y)`` the importance weights: BBSE solves
``C^T w = mu_hat`` with ``mu_hat`` the predicted-class frequencies on the unlabelled
target stream (their Eq. 3 / Alg. 1). The corrected classifier predicts
``argmax_y p_s(y | x) w(y)`` (their Sec. 5 and Saerens et al. 2002).
"""
from __future__ import annotations

import numpy as np


def joint_confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[y, yhat]`` = fraction of the samples with label ``y`` and prediction ``yhat``."""
    C = np.zeros((num_classes, num_classes))
    np.add.at(C, (np.asarray(labels), np.asarray(preds)), 1.0)
    return C / max(1, len(labels))


def bbse_weights(C: np.ndarray, mu_hat: np.ndarray, *, ridge: float = 1e-3) -> np.ndarray:
    """Solve ``C^T w = mu_hat`` for one or a batch of ``mu_hat`` (rows); return ``w >= 0``.

    ``ridge`` (relative to the mean eigenvalue of ``C C^T``) regularizes a near-singular ``C`` (a class the validation split never
    predicts); negative solutions are clipped to 0 and ``w`` is renormalized so the
    implied target prior ``w * p_s`` sums to one.
    """
    C = np.asarray(C, dtype=np.float64)
    mu = np.atleast_2d(np.asarray(mu_hat, dtype=np.float64))
    K = C.shape[0]
    A = C @ C.T  # normal equations of min ||C^T w - mu||^2
    A = A + ridge * (np.trace(A) / K) * np.eye(K)
    w = np.linalg.solve(A, (C @ mu.T)).T  # least squares C^T w ~ mu, Tikhonov-regularized
    w = np.maximum(w, 0.0)
    p_s = C.sum(1)
    total = w @ p_s
    w = np.where(total[:, None] > 0, w / np.maximum(total[:, None], 1e-12), 1.0)
    return w if np.ndim(mu_hat) == 2 else w[0]

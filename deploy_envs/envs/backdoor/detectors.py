"""Backdoor detectors that screen a trained victim's training set.

* ``"spectral"`` - spectral signatures (Tran, Li & Madry 2018, "Spectral
  Signatures in Backdoor Attacks", Algorithm 1): for each class, take the
  learned representations of its training points (here the victim's last
  hidden layer, as Tran et al. take a ResNet's penultimate layer), centre them,
  find the top right singular vector ``v`` of the centred matrix and score each
  point by ``((r - mean) . v)^2``; the points with the ``1.5 * eps`` highest
  scores of each class are flagged, ``eps`` being an upper bound on the number
  of poisoned points (the defender knows the attacker's budget).
* ``"none"`` - flags nothing.

All copies are screened at once: class covariances are one batched matrix
product per class and their top eigenvectors one batched ``eigh``
(the top right singular vector of the centred matrix is the top eigenvector of
its scatter matrix).
"""
from __future__ import annotations

import torch

DETECTORS = ("spectral", "none")


def spectral_scores(reps: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Outlier scores ``(B, N)`` of representations ``reps (B, N, h)`` with labels ``(B, N)``."""
    reps = reps.double()  # the scatter matrices are small; float64 keeps eigh stable
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(reps.dtype)  # (B, N, K)
    counts = onehot.sum(1).clamp(min=1.0)  # (B, K)
    means = torch.bmm(onehot.transpose(1, 2), reps) / counts.unsqueeze(-1)  # (B, K, h)
    centred = reps - torch.gather(means, 1, labels.unsqueeze(-1).expand(-1, -1, reps.shape[-1]))
    top = []
    for c in range(num_classes):
        rc = centred * onehot[..., c : c + 1]
        scatter = torch.bmm(rc.transpose(1, 2), rc)  # (B, h, h)
        top.append(torch.linalg.eigh(scatter)[1][..., -1])  # eigenvector of the largest eigenvalue
    v = torch.stack(top, 1)  # (B, K, h)
    proj = (centred * torch.gather(v, 1, labels.unsqueeze(-1).expand(-1, -1, reps.shape[-1]))).sum(-1)
    return proj.pow(2)


def flag_top_per_class(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int) -> torch.Tensor:
    """Boolean mask ``(B, N)``: the ``k`` highest-scoring points of each class (all of a class smaller than ``k``)."""
    B, N = scores.shape
    k = min(int(k), N)
    flagged = torch.zeros(B, N, dtype=torch.bool)
    if k <= 0:
        return flagged
    for c in range(num_classes):
        in_c = labels == c
        s = torch.where(in_c, scores, torch.full_like(scores, -torch.inf))
        vals, idx = torch.topk(s, k, dim=1)
        flagged.scatter_(1, idx, torch.isfinite(vals) | flagged.gather(1, idx))
    return flagged


def detect(kind: str, reps: torch.Tensor, labels: torch.Tensor, num_classes: int, eps_points: int) -> torch.Tensor:
    """Flagged training points ``(B, N)`` of detector ``kind`` (``eps_points``: bound on poisoned points per class)."""
    if kind == "none":
        return torch.zeros(labels.shape, dtype=torch.bool)
    return flag_top_per_class(spectral_scores(reps, labels, num_classes), labels, num_classes, int(round(1.5 * eps_points)))

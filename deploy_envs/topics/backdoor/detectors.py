"""Backdoor detectors that screen a trained victim's training set.

* ``"spectral"`` - spectral signatures (Tran, Li & Madry 2018, "Spectral
  Signatures in Backdoor Attacks", Algorithm 1): for each class, take the
  learned representations of its training points (here the victim's last
  hidden layer, as Tran et al. take a ResNet's penultimate layer), centre them,
  find the top right singular vector ``v`` of the centred matrix and score each
  point by ``((r - mean) . v)^2``; the points with the ``1.5 * eps`` highest
  scores of each class are flagged, ``eps`` being an upper bound on the number
  of poisoned points (the defender knows the attacker's budget).
* ``"activation_clustering"`` - activation clustering (Chen et al. 2018,
  "Detecting Backdoor Attacks on Deep Neural Networks by Activation
  Clustering", arXiv:1811.03728): for each class, reduce the centred
  representations of its training points to ``ac_dims`` (10, as Chen et al.)
  dimensions, split them into two clusters with k-means (k = 2), and flag the
  smaller cluster when its share of the class is below ``ac_size_threshold``
  (the "relative size" analysis; 0.35 is the default of the IBM Adversarial
  Robustness Toolbox's ``ActivationDefence``). Chen et al. reduce with ICA; here
  the reduction is PCA (the top eigenvectors of the class scatter matrix, as
  BackdoorBench's implementation does), because it batches over copies in one
  ``eigh`` where ICA needs an iterative fit per class and copy. The k-means is
  Lloyd's algorithm run for all copies at once from a deterministic start (the
  sign of the first principal component), so no randomness enters and copy
  ``i`` is screened identically in a single env and in a batch;
  ``tests/test_backdoor.py`` checks it against ``sklearn.cluster.KMeans``.
* ``"none"`` - flags nothing.

All copies are screened at once: class covariances are one batched matrix
product per class and their top eigenvectors one batched ``eigh``
(the top right singular vector of the centred matrix is the top eigenvector of
its scatter matrix).
"""
from __future__ import annotations

import torch

DETECTORS = ("spectral", "activation_clustering", "none")


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
    flagged = torch.zeros(B, N, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return flagged
    for c in range(num_classes):
        in_c = labels == c
        s = torch.where(in_c, scores, torch.full_like(scores, -torch.inf))
        vals, idx = torch.topk(s, k, dim=1)
        flagged.scatter_(1, idx, torch.isfinite(vals) | flagged.gather(1, idx))
    return flagged


def two_means(z: torch.Tensor, mask: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """Batched k-means with k = 2 (Lloyd's algorithm) on the members ``mask (B, N)`` of ``z (B, N, r)``.

    Starts from the split by the sign of the first coordinate (``z`` is PCA-reduced,
    so that is the first principal component) and runs ``iters`` assignment/update
    rounds for every copy at once. Returns the assignment ``(B, N)`` (True: cluster 1;
    False for non-members); an empty cluster keeps its previous centre.
    """
    assign = (z[..., 0] > 0) & mask
    c = [torch.zeros(z.shape[0], 1, z.shape[-1], dtype=z.dtype, device=z.device)] * 2
    for _ in range(iters):
        new = []
        for k, members in enumerate((~assign & mask, assign)):
            m = members.to(z.dtype).unsqueeze(-1)
            cnt = m.sum(1, keepdim=True)
            centre = (z * m).sum(1, keepdim=True) / cnt.clamp(min=1.0)
            new.append(torch.where(cnt > 0, centre, c[k]))
        c = new
        d0 = (z - c[0]).pow(2).sum(-1)
        d1 = (z - c[1]).pow(2).sum(-1)
        nxt = (d1 < d0) & mask
        if torch.equal(nxt, assign):
            break
        assign = nxt
    return assign


def activation_clustering(reps: torch.Tensor, labels: torch.Tensor, num_classes: int, dims: int = 10,
                          size_threshold: float = 0.35) -> torch.Tensor:
    """Flagged points ``(B, N)`` of activation clustering (Chen et al. 2018), batched over copies; see the module docstring."""
    reps = reps.double()
    B, N, h = reps.shape
    r = min(int(dims), h)
    flagged = torch.zeros(B, N, dtype=torch.bool, device=reps.device)
    for c in range(num_classes):
        mask = labels == c
        m = mask.to(reps.dtype).unsqueeze(-1)
        cnt = m.sum(1, keepdim=True)
        centred = (reps - (reps * m).sum(1, keepdim=True) / cnt.clamp(min=1.0)) * m
        vecs = torch.linalg.eigh(torch.bmm(centred.transpose(1, 2), centred))[1][..., -r:].flip(-1)  # top-r, largest first
        z = torch.bmm(centred, vecs)  # (B, N, r)
        one = two_means(z, mask)
        n1 = one.sum(1, keepdim=True)
        n = mask.sum(1, keepdim=True)
        small = torch.where(n1 <= n - n1, one, ~one & mask)  # members of the smaller cluster
        share = torch.minimum(n1, n - n1).to(reps.dtype) / n.clamp(min=1).to(reps.dtype)
        flagged |= small & (share < size_threshold) & (n > 1)
    return flagged


def detect(kind: str, reps: torch.Tensor, labels: torch.Tensor, num_classes: int, eps_points: int, *,
           ac_dims: int = 10, ac_size_threshold: float = 0.35) -> torch.Tensor:
    """Flagged training points ``(B, N)`` of detector ``kind`` (``eps_points``: bound on poisoned points per class)."""
    if kind == "none":
        return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    if kind == "activation_clustering":
        return activation_clustering(reps, labels, num_classes, ac_dims, ac_size_threshold)
    return flag_top_per_class(spectral_scores(reps, labels, num_classes), labels, num_classes, int(round(1.5 * eps_points)))

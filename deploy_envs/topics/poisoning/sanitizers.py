"""Data sanitizers that screen incoming training points, batched over copies.

The defender trusts its clean base training set and screens each new point
before it enters the training set; a point that fails the screen is discarded.
Each sanitizer answers, for ``m`` points at once (points of different copies,
with the victim parameters of their copy where needed), whether to keep them.

* ``"none"`` - keep everything.
* ``"centroid"`` - the sphere defence of Steinhardt, Koh & Liang 2017
  ("Certified Defenses for Data Poisoning Attacks", NeurIPS): discard a point
  whose distance to the centroid of its (claimed) class exceeds that class's
  radius, the ``quantile`` of the clean points' distances to their centroid.
  Centroids and radii come from the clean data (the "oracle" defender of that
  paper).
* ``"loss"`` - loss-based filtering (as in Koh, Steinhardt & Liang 2018,
  "Stronger Data Poisoning Attacks Break Data Sanitization Defenses"): discard a
  point whose loss under the copy's current victim exceeds the ``quantile`` of
  that victim's losses on the clean training set.
* ``"knn"`` - k-NN label sanitization (Paudice et al. 2018, "Label Sanitization
  against Label Flipping Poisoning Attacks"): a point is suspect when fewer than
  ``knn_agreement`` of its ``knn_k`` nearest clean neighbours share its label.
  Paudice et al. relabel such a point to the neighbours' majority; here it is
  discarded (the conservative form, which also lets the environment count it).
"""
from __future__ import annotations

import numpy as np
import torch

from deploy_envs.topics.poisoning.victims import as_device, per_example_loss

SANITIZERS = ("none", "centroid", "loss", "knn")


class Sanitizer:
    """A screen of incoming points; see the module docstring."""

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, num_classes: int, *,
                 quantile: float = 0.95, knn_k: int = 10, knn_agreement: float = 0.5,
                 device: str | torch.device = "cpu") -> None:
        if kind not in SANITIZERS:
            raise ValueError(f"sanitizer={kind!r} is not allowed; choose one of {', '.join(map(repr, SANITIZERS))}")
        self.kind = kind
        self.K = int(num_classes)
        self.quantile = float(quantile)
        self.knn_k = int(knn_k)
        self.knn_agreement = float(knn_agreement)
        self.device = torch.device(device)
        self.x = torch.as_tensor(np.asarray(x, np.float32), device=self.device)
        self.y = torch.as_tensor(np.asarray(y, np.int64), device=self.device)
        self.centroids = np.stack([x[y == c].mean(0) for c in range(self.K)]).astype(np.float32)
        self.radii = np.array(
            [np.quantile(np.linalg.norm(x[y == c] - self.centroids[c], axis=1), self.quantile) for c in range(self.K)],
            dtype=np.float32,
        )

    def keep(self, xs: np.ndarray, ys: np.ndarray, theta: torch.Tensor | None = None,
             victims=None) -> np.ndarray:
        """Which of the points to keep: ``xs (m, p, d)``, ``ys (m, p)``; ``theta (m, D, K)`` for ``"loss"``."""
        m, p = ys.shape
        if self.kind == "none":
            return np.ones((m, p), dtype=bool)
        if self.kind == "centroid":
            dist = np.linalg.norm(xs - self.centroids[ys], axis=-1)
            return dist <= self.radii[ys]
        if self.kind == "knn":
            flat = as_device(xs.reshape(m * p, -1), torch.float32, self.device)
            d2 = torch.cdist(flat, self.x)
            nn = d2.topk(self.knn_k, dim=1, largest=False).indices
            agree = (self.y[nn] == as_device(ys.reshape(-1), torch.int64, self.device).unsqueeze(1)).float().mean(1)
            return (agree >= self.knn_agreement).cpu().numpy().reshape(m, p)
        # loss-based: threshold from each copy's victim on the clean training set
        if theta is None or victims is None:
            raise ValueError("the loss sanitizer needs the victims' parameters")
        clean = per_example_loss(victims.loss_kind, victims.scores(theta, self.x), self.y.unsqueeze(0).expand(m, -1))
        thresh = torch.quantile(clean, self.quantile, dim=1)
        new = per_example_loss(victims.loss_kind, victims.scores_each(theta, xs), as_device(ys, torch.int64, self.device))
        return (new <= thresh.unsqueeze(1)).cpu().numpy()

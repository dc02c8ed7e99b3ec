"""The victim classifier as the adversarial environments query it.

:class:`Victim` wraps a torch classifier with the batched operations the cores
need (logits, margins, loss gradients with respect to the input) and holds the
dataset and the pool of test inputs it classifies correctly. It is shared by
``Evasion-v0``, ``SpatialEvasion-v0`` and the attacker-vs-defender game.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_envs.core.validation import check_choice
from deploy_envs.data import Dataset, load_dataset
from deploy_envs.models.zoo import load_model, resolve_name

SPLITS = ("test", "train")


@dataclass
class Victim:
    """A classifier in eval mode plus the data it is attacked on."""

    model: nn.Module
    dataset: Dataset
    name: str
    device: torch.device
    split: str = "test"

    def __post_init__(self) -> None:
        self._params = tuple(self.model.parameters())

    @classmethod
    def build(cls, victim: str | nn.Module = "standard", dataset: str = "digits", device: str = "cpu", split: str = "test") -> Victim:
        """Resolve a zoo name (``"standard"``, ``"madry"``, ``"digits-madry"``) or wrap a given module."""
        check_choice("split", split, SPLITS)
        ds = load_dataset(dataset)
        if isinstance(victim, nn.Module):
            model, name = victim, type(victim).__name__
        elif isinstance(victim, str):
            name = resolve_name(victim, dataset)
            model = load_model(name)
        else:
            raise ValueError(f"victim={victim!r} must be a zoo model name or a torch.nn.Module")
        dev = torch.device(device)
        model = model.to(dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(model=model, dataset=ds, name=name, device=dev, split=split)

    # ------------------------------------------------------------ data views
    @property
    def images(self) -> np.ndarray:
        return self.dataset.x_test if self.split == "test" else self.dataset.x_train

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.y_test if self.split == "test" else self.dataset.y_train

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def correct_indices(self) -> np.ndarray:
        """Indices of the split's inputs that the victim classifies correctly (its attack pool)."""
        if not hasattr(self, "_correct"):
            pred = self.predict(self.images.reshape(len(self.labels), -1))
            self._correct = np.flatnonzero(pred == self.labels)
        return self._correct

    # ------------------------------------------------------------ queries
    def _tensor(self, x_flat: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(x_flat, dtype=np.float32))
        if self.device.type != "cpu":
            x = x.to(self.device)
        return x.view(-1, *self.image_shape)

    def logits(self, x_flat: np.ndarray) -> torch.Tensor:
        """Logits for a batch of flat inputs ``(n, d)``.

        No ``torch.no_grad()`` needed: :meth:`build` froze the parameters and the
        input does not require grad, so autograd records nothing (and the context
        manager's cost is noticeable at one small batch per env step).
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in self._params):
            with torch.no_grad():  # someone unfroze the model: keep queries graph-free
                return self.model(self._tensor(x_flat))
        return self.model(self._tensor(x_flat))

    def predict(self, x_flat: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        return np.concatenate(
            [self.logits(x_flat[i : i + batch_size]).argmax(1).cpu().numpy() for i in range(0, len(x_flat), batch_size)]
        )

    def logits_and_grad(self, x_flat: np.ndarray, labels: np.ndarray, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the input gradient of the attacker's objective (one forward + backward).

        The objective is the cross-entropy w.r.t. ``labels`` when untargeted (ascent
        increases the loss) and its negative when targeted (ascent approaches the target).
        """
        x = self._tensor(x_flat).requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)
            loss = F.cross_entropy(logits, torch.from_numpy(labels).to(self.device), reduction="sum")
            if targeted:
                loss = -loss
            (grad,) = torch.autograd.grad(loss, x)
        return logits.detach(), grad.flatten(1)


def margins(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Attack margin: positive while the attack has not succeeded, negative once it has.

    Untargeted: ``z_y - max_{j != y} z_j`` for the true label ``y``.
    Targeted: ``max_{j != t} z_j - z_t`` for the target ``t``.
    """
    z_l = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - z_l if targeted else z_l - other


def margins_np(z: np.ndarray, labels: np.ndarray, targeted: bool, rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`margins` of numpy logits ``z`` ``(k, K)`` (the same values: a gather, a max and a
    difference); ``rows`` may pass a ready ``arange(k)``."""
    rows = np.arange(len(z)) if rows is None else rows
    z_l = z[rows, labels]
    others = z.copy()
    others[rows, labels] = -np.inf
    other = torch.from_numpy(others).amax(1).numpy()  # numpy's row maximum is slow on short rows
    return other - z_l if targeted else z_l - other

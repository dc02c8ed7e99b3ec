"""Training of victim classifiers: standard and PGD adversarial training (Madry et al. 2018).

Uses CUDA when present and the CPU otherwise. The digits recipes run in well
under a few minutes on a 2-core CPU.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.data import load_dataset
from deploy_envs.metrics.robustness import accuracy, ascent_direction, pgd_attack, project, robust_accuracy, strong_evaluation
from deploy_envs.models.architectures import build_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdversarialTraining:
    """Adversarial training: PGD (Madry et al. 2018) or TRADES (Zhang et al. 2019).

    ``method="pgd"`` replaces each batch by (a mix with) its PGD adversarial version
    (cross-entropy on ``x'``). ``method="trades"`` minimizes
    ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'`` from ``steps`` steps of
    PGD on that KL term, started from ``x + 0.001 * N(0, 1)`` (Zhang et al. 2019).
    """

    epsilon: float = 0.2
    steps: int = 7
    norm: str = "linf"
    random_start: bool = True
    clean_fraction: float = 0.0
    """Fraction of each batch kept clean (0 is pure Madry training; PGD method only)."""
    method: str = "pgd"
    beta: float = 6.0
    """TRADES weight of the robustness (KL) term."""
    step_size: float | None = None
    """Attack step; ``None`` is ``2.5 * epsilon / steps``."""


@dataclass(frozen=True)
class Recipe:
    """Everything needed to retrain a zoo model bit for bit (up to CUDA nondeterminism)."""

    dataset: str = "digits"
    architecture: str = "small_cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    adversarial: AdversarialTraining | None = None
    eval_epsilons: tuple[float, ...] = (0.1, 0.2, 0.3)
    eval_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of :func:`~deploy_envs.metrics.robustness.strong_evaluation`'s settings for the card."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def arch_kwargs_for(recipe: Recipe) -> dict[str, Any]:
    """Architecture arguments implied by the dataset, overridden by the recipe's own."""
    ds = load_dataset(recipe.dataset)
    c, h, _ = ds.image_shape
    base: dict[str, Any] = {"num_classes": ds.num_classes}
    if recipe.architecture == "small_cnn":
        base.update(in_channels=c, image_size=h)
    else:
        base.update(in_features=ds.input_dim)
    base.update(recipe.arch_kwargs)
    return base


def train_classifier(recipe: Recipe, *, device: str | torch.device | None = None, progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Train a classifier by ``recipe``; return it (on CPU, eval mode) and its metrics."""
    check_choice("architecture", recipe.architecture, ("small_cnn", "mlp"))
    check_positive("epochs", recipe.epochs, integer=True)
    if recipe.adversarial is not None:
        check_choice("method", recipe.adversarial.method, ("pgd", "trades"))
    dev = torch.device(device) if device is not None else default_device()
    ds = load_dataset(recipe.dataset)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    model = build_model(recipe.architecture, **arch_kwargs_for(recipe)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    x = torch.as_tensor(ds.x_train).to(dev)
    y = torch.as_tensor(ds.y_train).to(dev)
    adv = recipe.adversarial
    epochs = range(recipe.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"train {recipe.dataset}/{recipe.architecture}{' (PGD)' if adv else ''}", unit="epoch")
    for _ in epochs:
        model.train()
        perm = torch.randperm(len(y), generator=gen).to(dev)
        for i in range(0, len(y), recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            xb, yb = x[idx], y[idx]
            if adv is not None and adv.method == "trades":
                loss = trades_loss(model, xb, yb, adv, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
                continue
            if adv is not None:
                model.eval()
                n_clean = int(round(adv.clean_fraction * len(yb)))
                x_adv = pgd_attack(
                    model, xb[n_clean:], yb[n_clean:], epsilon=adv.epsilon, steps=adv.steps, norm=adv.norm,
                    random_start=adv.random_start, step_size=adv.step_size,
                )
                xb = torch.cat([xb[:n_clean], x_adv])
                model.train()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model = model.cpu().eval()
    metrics = evaluate_classifier(model, recipe)
    logger.info("trained %s: %s", recipe.dataset, metrics)
    return model, metrics


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: AdversarialTraining, gen: torch.Generator) -> torch.Tensor:
    """TRADES objective (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

    ``x'`` maximizes the KL term by ``adv.steps`` steps of PGD in the ``adv.norm`` ball,
    with the model in eval mode; the returned loss is computed in train mode.
    """
    model.eval()
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    alpha = 2.5 * adv.epsilon / adv.steps if adv.step_size is None else adv.step_size
    noise = torch.randn(x.shape, generator=gen).to(x.device)
    x_adv = (x + 0.001 * noise).clamp(0, 1)
    for _ in range(adv.steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
        (grad,) = torch.autograd.grad(kl, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * ascent_direction(grad, adv.norm)
            x_adv = (x + project(x_adv - x, adv.epsilon, adv.norm)).clamp(0, 1)
    model.train()
    logits = model(x)
    logits_adv = model(x_adv.detach())
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + adv.beta * robust


def evaluate_classifier(model: nn.Module, recipe: Recipe, steps: int = 20, progress: bool = False) -> dict[str, Any]:
    """Clean test accuracy and robust accuracy at the recipe's evaluation radii.

    ``robust_accuracy`` is the strong evaluation (:func:`strong_evaluation`, worst case
    over APGD-CE with restarts, targeted APGD-DLR and Square), with its 95% interval and
    settings; ``pgd20_robust_accuracy`` is ``steps``-step PGD, quoted beside it.
    """
    ds = load_dataset(recipe.dataset)
    metrics: dict[str, Any] = {"clean_accuracy": round(accuracy(model, ds.x_test, ds.y_test), 4)}
    strong = {eps: strong_evaluation(model, ds.x_test, ds.y_test, epsilon=eps, progress=progress, **recipe.eval_kwargs)
              for eps in recipe.eval_epsilons}
    metrics["robust_accuracy"] = {f"linf@{eps}": r.robust_accuracy for eps, r in strong.items()}
    metrics["robust_accuracy_95ci"] = {f"linf@{eps}": [round(v, 4) for v in r.interval()] for eps, r in strong.items()}
    metrics["robust_after_attack"] = {f"linf@{eps}": r.after_attack for eps, r in strong.items()}
    first = next(iter(strong.values()), None)
    if first is not None:
        metrics["robust_eval"] = first.settings.split(", epsilon ")[0] + f", on the {len(ds.y_test)} test images, seed 0"
    metrics["pgd20_robust_accuracy"] = {
        f"linf@{eps}": round(robust_accuracy(model, ds.x_test, ds.y_test, epsilon=eps, steps=steps), 4)
        for eps in recipe.eval_epsilons
    }
    metrics["pgd20_eval"] = f"PGD-{steps}, step 2.5*eps/{steps}, no restarts, on the {len(ds.y_test)} test images"
    return metrics


def set_torch_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)

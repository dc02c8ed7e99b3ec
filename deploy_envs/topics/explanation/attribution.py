"""Attribution maps from Captum (Kokhlikyan et al. 2020), turned into feature scores and orders.

Every method here is Captum's, not written by hand; this module only picks its
settings so that it removes features the way ``Explanation-v0`` does (the same
replacement input as baseline, the same patch grid as feature mask):

| method | Captum class | reference |
|---|---|---|
| ``saliency`` | ``Saliency`` (absolute input gradient) | Simonyan et al. 2014 |
| ``integrated_gradients`` | ``IntegratedGradients`` (baseline = replacement input) | Sundararajan et al. 2017 |
| ``occlusion`` | ``Occlusion`` (window = stride = patch, baseline = replacement input) | Zeiler & Fergus 2014 |
| ``shap`` | ``ShapleyValueSampling`` over the patch grid (baseline = replacement input) | Strumbelj & Kononenko 2010; Lundberg & Lee 2017 |

:func:`randomize_model` builds the randomized models of the model-parameter
randomization test of Adebayo et al. 2018 (cascading from the top layer, or all
layers at once).
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch import nn

from deploy_envs.core.extras import require
from deploy_envs.core.validation import check_choice, check_positive

logger = logging.getLogger(__name__)

METHODS = ("saliency", "integrated_gradients", "occlusion", "shap")
RANDOMIZATIONS = ("full", "cascading")


def attribute(
    model: nn.Module,
    x_flat: np.ndarray,
    target: np.ndarray,
    method: str,
    *,
    image_shape: tuple[int, int, int],
    baselines: np.ndarray | None = None,
    patch_size: int = 1,
    ig_steps: int = 32,
    shap_samples: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Attribution of every pixel to ``model``'s logit of class ``target``, rows of ``x_flat`` ``(n, d)``.

    Returns ``(n, d)`` float32. ``baselines`` (``(n, d)``, default zeros) is the
    replacement input; ``patch_size`` sets the occlusion window and the Shapley
    feature grid. Unknown ``method`` raises ``ValueError`` naming it.
    """
    check_choice("method", method, METHODS)
    captum_attr = require("captum.attr", extra="interpret", feature="Captum explanations (Explanation-v0's reference explainers)")
    IntegratedGradients, Occlusion, Saliency, ShapleyValueSampling = (
        captum_attr.IntegratedGradients, captum_attr.Occlusion, captum_attr.Saliency, captum_attr.ShapleyValueSampling
    )
    ig_steps = check_positive("ig_steps", ig_steps, integer=True)
    shap_samples = check_positive("shap_samples", shap_samples, integer=True)
    model = model.eval()
    n = len(x_flat)
    x = torch.from_numpy(np.ascontiguousarray(x_flat, np.float32)).view(n, *image_shape)
    b = torch.zeros_like(x) if baselines is None else torch.from_numpy(np.ascontiguousarray(baselines, np.float32)).view(n, *image_shape)
    t = torch.as_tensor(np.asarray(target, np.int64))
    params = list(model.parameters())
    grads = [p.requires_grad for p in params]
    for p in params:  # captum needs input gradients only; leave the weights frozen
        p.requires_grad_(False)
    try:
        if method == "saliency":
            a = Saliency(model).attribute(x.clone().requires_grad_(True), target=t, abs=True)
        elif method == "integrated_gradients":
            a = IntegratedGradients(model).attribute(x, baselines=b, target=t, n_steps=ig_steps, method="riemann_trapezoid")
        elif method == "occlusion":
            c = image_shape[0]
            win = (c, patch_size, patch_size)
            a = Occlusion(model).attribute(x, sliding_window_shapes=win, strides=win, baselines=b, target=t, perturbations_per_eval=16)
        else:
            from deploy_envs.topics.explanation.features import feature_index

            mask = torch.from_numpy(feature_index(image_shape, patch_size).reshape(1, *image_shape))
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                a = ShapleyValueSampling(model).attribute(
                    x, baselines=b, target=t, feature_mask=mask, n_samples=shap_samples, perturbations_per_eval=16
                )
    finally:
        for p, g in zip(params, grads):
            p.requires_grad_(g)
    return a.detach().reshape(n, -1).cpu().numpy().astype(np.float32)


def feature_scores(pixel_attr: np.ndarray, feature_of_pixel: np.ndarray, num_features: int) -> np.ndarray:
    """Sum pixel attributions over each feature (patch): ``(n, d)`` -> ``(n, F)``."""
    n = len(pixel_attr)
    out = np.zeros((n, num_features), np.float64)
    np.add.at(out, (slice(None), feature_of_pixel), pixel_attr.astype(np.float64))
    return out


def ranking(scores: np.ndarray) -> np.ndarray:
    """Feature ids from highest to lowest score (ties: lower id first), per row."""
    return np.argsort(-np.asarray(scores, np.float64), axis=1, kind="stable")


def parameter_layers(model: nn.Module) -> list[nn.Module]:
    """The layers with parameters of ``model``, from the output back to the input (the cascading order)."""
    return [m for m in model.modules() if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))][::-1]


def randomize_model(model: nn.Module, mode: str = "full", *, layers: int | None = None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with re-initialized weights (Adebayo et al. 2018, model-parameter randomization).

    ``mode="full"`` re-initializes every layer; ``mode="cascading"`` re-initializes the
    top ``layers`` layers (from the logits down), as in the paper's cascading test.
    Initialization is each layer's own ``reset_parameters`` under ``torch.manual_seed(seed)``.
    """
    check_choice("mode", mode, RANDOMIZATIONS)
    out = copy.deepcopy(model).eval()
    todo = parameter_layers(out)
    if mode == "cascading":
        if layers is None:
            raise ValueError("mode='cascading' needs layers (how many layers from the top to randomize)")
        layers = int(check_positive("layers", layers, integer=True))
        if layers > len(todo):
            raise ValueError(f"layers={layers} exceeds the model's {len(todo)} layers with parameters")
        todo = todo[:layers]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in todo:
            m.reset_parameters()
    for p in out.parameters():
        p.requires_grad_(False)
    return out

"""``deploy_envs/Explanation-v0``: order the features of an input by how much the victim's prediction rests on them."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Option, check_choice, check_number, check_positive
from deploy_envs.topics.evasion.victim import Victim
from deploy_envs.topics.explanation.features import (
    REPLACEMENTS,
    check_patch_size,
    feature_index,
    replacement_images,
)

MODES = ("deletion", "sufficiency")


class ExplanationCore(BatchedCore):
    """## Description

    The agent is an explainer. Each episode shows one input and the victim's
    prediction on it; the agent's job is to name the features (pixels or square
    patches) that the prediction rests on, and the env scores the answer by what
    happens to the victim's confidence when those features are removed or kept.

    * ``mode="deletion"``: the deletion metric of Petsiuk et al. 2018 (RISE). Each
      step the agent's ``features_per_step`` highest-scored features that are still
      present are replaced by the replacement value; a faithful explanation removes
      first what the prediction rests on, so the confidence in the originally
      predicted class falls fast and the area under the confidence curve
      (deletion AUC) is small.
    * ``mode="sufficiency"``: start from the fully replaced input and reveal the
      agent's highest-scored features, until the revealed set alone restores the
      prediction (same class, confidence at least ``sufficiency_threshold`` times
      the original): a small sufficient subset in the spirit of Anchors (Ribeiro
      et al. 2018) and sufficient input subsets (Carter et al. 2019), scored by the
      insertion curve of Petsiuk et al. 2018.

    The replacement value (``zero``, ``mean`` of the training images, or ``blur``
    of the input) changes the answer (Hooker et al. 2019 on out-of-distribution
    removals), so it is an argument. All copies' victim queries run as one batched
    forward pass.

    ## Action Space

    ``Box(-1, 1, (F,), float32)``: one score per feature (``F`` patches of
    ``patch_size x patch_size`` pixels tiling the image; ``F = d`` for
    ``patch_size=1``). The env takes the ``features_per_step`` highest-scored
    features not taken yet (ties go to the lower feature index). A fixed score
    vector therefore plays a whole ranking: a saliency map is a valid action.

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``input`` | d | [0, 1] | the original input (flattened ``C x H x W``) |
    | ``current`` | d | [0, 1] | the input the victim sees now |
    | ``taken`` | F | [0, 1] | 1 for features removed (deletion) / revealed (sufficiency) |
    | ``prediction`` | K | [0, 1] | one-hot class the victim predicted on the original input |
    | ``confidence`` | 1 | [0, 1] | victim's probability of that class now |
    | ``original_confidence`` | 1 | [0, 1] | the same on the original input |
    | ``progress`` | 1 | [0, 1] | fraction of the episode's steps done |

    ## Rewards

    The x-axis of the curve is the fraction of the episode's features taken
    (``f`` in [0, 1]); a step that takes a share ``w`` of them moves ``f`` by ``w``.

    * deletion: ``w * (p_0 - (p_prev + p_now) / 2)`` with ``p_0`` the original
      confidence: the return of an episode is ``p_0 - AUC`` (trapezoidal deletion
      AUC), so maximizing it minimizes the deletion AUC.
    * sufficiency: ``w * (p_prev + p_now) / 2`` (the insertion AUC accrued by the
      step); on the step that makes the revealed set sufficient, plus
      ``(1 - f) * p_now``: the curve is held at the level reached, so revealing a
      sufficient set early is worth more. The return is that held insertion AUC.

    ## Starting State

    A test input drawn uniformly (or ``options={"index": i}``), the victim's
    prediction on it, and nothing taken: the original input (deletion) or the fully
    replaced input (sufficiency).

    ## Episode End

    Terminates when the episode's features are all taken: ``ceil(max_fraction * F)``
    features, in ``ceil(ceil(max_fraction * F) / features_per_step)`` steps; in
    sufficiency mode also as soon as the revealed set is sufficient.

    ## Info

    Per copy, every step: ``confidence`` (now), ``original_confidence``, ``auc``
    (area under the confidence curve so far over the fraction axis; at episode end
    the deletion AUC or the held insertion AUC), ``auc_normalized`` (``auc /
    original_confidence``), ``features_used`` (features taken), ``fraction_used``,
    ``success`` (deletion: the prediction has changed at some step; sufficiency:
    the revealed set is sufficient), ``flip_fraction`` (deletion: fraction removed
    when the prediction first changed, 1.0 if it never did; sufficiency: fraction
    revealed when it became sufficient, 1.0 if never), ``confidence_curve``
    (float32 array of length ``steps + 1``: the confidence after each step so far,
    starting with the starting input's, -1 for steps not yet taken),
    ``prediction_kept`` (the victim still predicts the original class now),
    ``predicted_label`` (original prediction), ``true_label``, ``sample_index``.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded 8x8), ``"mnist"``, ``"fashion_mnist"``.
    * ``victim``: zoo model (``"standard"``, ``"madry"`` or a full zoo name) or an ``nn.Module``.
    * ``mode``: ``"deletion"`` (default) or ``"sufficiency"``.
    * ``patch_size``: side of a square feature in pixels (default 1: pixels); must tile the image.
    * ``features_per_step``: features taken per step, 1..F (default 4).
    * ``replacement``: ``"zero"`` (default), ``"mean"`` or ``"blur"``; ``blur_sigma`` (default 1.0 pixel).
    * ``max_fraction``: fraction of the features an episode takes at most, in (0, 1] (default 1).
    * ``sufficiency_threshold``: share of the original confidence a sufficient set must restore (default 0.9).
    * ``split``: ``"test"`` (default) or ``"train"`` inputs; ``device``: torch device.

    ## Version History

    * v0: initial release.
    """

    reset_options = {
        "index": Option(int, "the input of the new episode", per_copy=True,
                        allowed=lambda core: range(len(core.pool))),
    }

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        victim: Any = "standard",
        mode: str = "deletion",
        patch_size: int = 1,
        features_per_step: int = 4,
        replacement: str = "zero",
        blur_sigma: float = 1.0,
        max_fraction: float = 1.0,
        sufficiency_threshold: float = 0.9,
        split: str = "test",
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.mode = check_choice("mode", mode, MODES)
        self.replacement = check_choice("replacement", replacement, REPLACEMENTS)
        self.blur_sigma = check_positive("blur_sigma", blur_sigma)
        self.max_fraction = check_number("max_fraction", max_fraction, low=0.0, high=1.0, low_inclusive=False)
        self.sufficiency_threshold = check_number("sufficiency_threshold", sufficiency_threshold, low=0.0, high=1.0)
        self.victim = Victim.build(victim, dataset=dataset, device=device, split=split)
        self.image_shape = tuple(self.victim.image_shape)
        self.patch_size = check_patch_size(patch_size, self.image_shape)
        self.feature_of_pixel = feature_index(self.image_shape, self.patch_size)
        F = self.num_features = int(self.feature_of_pixel.max()) + 1
        self.features_per_step = check_number("features_per_step", features_per_step, low=1, high=F, integer=True)
        self.episode_features = math.ceil(self.max_fraction * F - 1e-9)
        self.max_steps = math.ceil(self.episode_features / self.features_per_step)
        d = self.d = int(np.prod(self.image_shape))
        K = self.K = self.victim.num_classes

        images = self.victim.images
        self._flat_images = images.reshape(len(images), d)
        self.mean_image = self.victim.dataset.x_train.reshape(len(self.victim.dataset.x_train), d).mean(0).astype(np.float32)
        # the replacement input of every pool image, computed once (blur is per image)
        self._base_all = None
        if self.replacement == "blur":
            self._base_all = self.baseline_images(self._flat_images)
        self.pool = np.arange(len(images))

        parts = [("input", d), ("current", d), ("taken", F), ("prediction", K), ("confidence", 1),
                 ("original_confidence", 1), ("progress", 1)]
        self.single_observation_space, self.obs_slices = flat_box([(name, size, 0.0, 1.0) for name, size in parts])
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Box(-1.0, 1.0, (F,), dtype=np.float32)

        n = self.num_envs
        self.x0 = np.zeros((n, d), np.float32)
        self.base = np.zeros((n, d), np.float32)
        self.x = np.zeros((n, d), np.float32)
        self.taken = np.zeros((n, F), bool)
        self.pred = np.zeros(n, np.int64)
        self.cur_label = np.zeros(n, np.int64)
        self.true_label = np.zeros(n, np.int64)
        self.sample_index = np.zeros(n, np.int64)
        self.p0 = np.zeros(n, np.float32)
        self.p = np.zeros(n, np.float32)
        self.t = np.zeros(n, np.int64)
        self.auc = np.zeros(n, np.float64)
        self.success = np.zeros(n, bool)
        self.flip_fraction = np.ones(n, np.float64)
        self.curve = np.full((n, self.max_steps + 1), -1.0, np.float32)
        self._eye = np.eye(K, dtype=np.float32)

    # --------------------------------------------------------------- helpers
    def baseline_images(self, x_flat: np.ndarray) -> np.ndarray:
        """The replacement input for each row of ``x_flat``: what a removed feature shows.

        Explainers use it as their baseline (integrated gradients, occlusion, Shapley
        sampling), so that they remove features the way the env does.
        """
        return replacement_images(x_flat, self.replacement, self.image_shape, self.mean_image, self.blur_sigma)

    def _probs(self, x_flat: np.ndarray) -> np.ndarray:
        return torch.softmax(self.victim.logits(x_flat), 1).cpu().numpy()

    def _compose(self, idx) -> np.ndarray:
        """The input the victim sees: original pixels where kept, replacement where not."""
        mask = self.taken[idx][:, self.feature_of_pixel]
        if self.mode == "deletion":
            return np.where(mask, self.base[idx], self.x0[idx])
        return np.where(mask, self.x0[idx], self.base[idx])

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        options = options or {}
        chosen = options.get("index")
        if chosen is not None:
            chosen = np.broadcast_to(np.asarray(chosen, dtype=np.int64), (len(idx),))
            if (chosen < 0).any() or (chosen >= len(self.pool)).any():
                raise ValueError(f"options['index']={chosen!r} must be in 0..{len(self.pool) - 1}")
        ks = np.array(
            [chosen[j] if chosen is not None else self.pool[self.rngs[i].integers(len(self.pool))] for j, i in enumerate(idx)],
            dtype=np.int64,
        )
        self.sample_index[idx] = ks
        self.true_label[idx] = self.victim.labels[ks]
        x0 = self._flat_images[ks]
        self.x0[idx] = x0
        self.base[idx] = self._base_all[ks] if self._base_all is not None else self.baseline_images(x0)
        self.taken[idx] = False
        self.t[idx] = 0
        self.auc[idx] = 0.0
        self.success[idx] = False
        self.flip_fraction[idx] = 1.0
        x = self._compose(idx)
        k = len(idx)
        # one batched pass: the original inputs and the starting inputs of all copies
        probs = self._probs(np.concatenate([x0, x]) if self.mode == "sufficiency" else x0)
        pred = probs[:k].argmax(1)
        rows = np.arange(k)
        self.pred[idx] = pred
        self.p0[idx] = probs[rows, pred]
        p_start = probs[k + rows, pred] if self.mode == "sufficiency" else probs[rows, pred]
        self.cur_label[idx] = probs[k:].argmax(1) if self.mode == "sufficiency" else pred
        self.p[idx] = p_start
        self.x[idx] = x
        self.curve[idx] = -1.0
        self.curve[idx, 0] = p_start
        return self._observe(idx)

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        k = len(idx)
        rows = np.arange(k)
        taken = self.taken[idx]
        n_before = taken.sum(1)
        remaining = self.episode_features - n_before
        # top-k of the features not taken yet: stable sort, so ties go to the lower index
        scores = np.where(taken, -np.inf, actions.astype(np.float64))
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.features_per_step]
        keep = np.arange(self.features_per_step)[None, :] < np.minimum(remaining, self.features_per_step)[:, None]
        r_idx = np.broadcast_to(rows[:, None], order.shape)[keep]
        taken[r_idx, order[keep]] = True
        self.taken[idx] = taken
        n_after = taken.sum(1)
        x = self._compose(idx)
        self.x[idx] = x
        probs = self._probs(x)
        pred = self.pred[idx]
        p_prev = self.p[idx].astype(np.float64)
        p_now = probs[rows, pred]
        cur = probs.argmax(1)
        width = (n_after - n_before) / self.episode_features
        frac = n_after / self.episode_features
        trap = width * (p_prev + p_now) / 2.0
        auc = self.auc[idx] + trap
        success = self.success[idx]
        flip = self.flip_fraction[idx]
        t = self.t[idx] + 1
        if self.mode == "deletion":
            reward = width * self.p0[idx] - trap
            newly = ~success & (cur != pred)
            terminated = t >= self.max_steps
        else:
            newly = ~success & (cur == pred) & (p_now >= self.sufficiency_threshold * self.p0[idx])
            hold = np.where(newly, (1.0 - frac) * p_now, 0.0)
            auc = auc + hold
            reward = trap + hold
            terminated = newly | (t >= self.max_steps)
        flip = np.where(newly, frac, flip)
        success = success | newly
        self.auc[idx], self.success[idx], self.flip_fraction[idx], self.t[idx] = auc, success, flip, t
        self.p[idx] = p_now
        self.cur_label[idx] = cur
        self.curve[idx, np.minimum(t, self.max_steps)] = p_now
        obs, info = self._observe(idx)
        return obs, np.asarray(reward, dtype=np.float64), terminated, np.zeros(k, bool), info

    # ------------------------------------------------------------- internals
    def _observe(self, idx):
        k = len(idx)
        s = self.obs_slices
        obs = np.empty((k, self.obs_dim), np.float32)
        obs[:, s["input"]] = self.x0[idx]
        obs[:, s["current"]] = self.x[idx]
        obs[:, s["taken"]] = self.taken[idx]
        obs[:, s["prediction"]] = self._eye[self.pred[idx]]
        obs[:, s["confidence"]] = self.p[idx, None]
        obs[:, s["original_confidence"]] = self.p0[idx, None]
        obs[:, s["progress"]] = (self.t[idx] / self.max_steps)[:, None]
        np.clip(obs, 0.0, 1.0, out=obs)
        used = self.taken[idx].sum(1)
        p0 = self.p0[idx].astype(np.float64)
        auc = self.auc[idx]
        info = {
            "confidence": self.p[idx].astype(np.float64),
            "original_confidence": p0,
            "auc": auc.copy(),
            "auc_normalized": auc / np.maximum(p0, 1e-12),
            "features_used": used,
            "fraction_used": used / self.num_features,
            "success": self.success[idx],
            "flip_fraction": self.flip_fraction[idx],
            "confidence_curve": self.curve[idx],
            "predicted_label": self.pred[idx],
            "prediction_kept": self.cur_label[idx] == self.pred[idx],
            "true_label": self.true_label[idx],
            "sample_index": self.sample_index[idx],
        }
        return obs, info

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        return (
            f"{self.mode} sample {self.sample_index[i]} true={self.true_label[i]} pred={self.pred[i]} "
            f"now={self.cur_label[i]} p={self.p[i]:.3f} (p0 {self.p0[i]:.3f}) "
            f"features {int(self.taken[i].sum())}/{self.num_features} auc={self.auc[i]:.3f}"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        c, h, w = self.image_shape
        scale = max(1, 64 // max(h, w))

        def tile(flat):
            img = flat.reshape(c, h, w).mean(0)
            img = np.kron(img, np.ones((scale, scale), np.float32))
            return np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2)

        gap = np.full((h * scale, 2, 3), (255, 0, 0), np.uint8)
        return np.concatenate([tile(self.x0[i]), gap, tile(self.x[i])], axis=1)

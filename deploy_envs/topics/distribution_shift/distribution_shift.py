"""``deploy_envs/DistributionShift-v0``: operate a deployed classifier whose inputs drift."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_number, check_positive, check_probability
from deploy_envs.topics.evasion.victim import Victim
from deploy_envs.topics.distribution_shift.bbse import bbse_weights, joint_confusion
from deploy_envs.topics.distribution_shift.corruptions import (
    LABEL_SHIFT,
    SEVERITIES,
    SHIFT_KINDS,
    check_corruption,
    check_severity,
    corrupt,
    draw_label_prior,
    draw_randomness,
    param,
)

logger = logging.getLogger(__name__)

QUANTILES = np.linspace(0.0, 1.0, 11)
DEFER_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
ADAPT_NONE, ADAPT_BBSE, ADAPT_FINETUNE = 0, 1, 2
VALIDATION_SEED = 0
"""Seed of the fixed split of the test set into the operator's labelled validation half and the stream half."""
EXP_FLOOR = -30.0  # softmax exponents are clamped here (exp(-30) ~ 1e-13): no subnormal floats on CPU
_FEATURE_CACHE: dict[tuple, tuple[dict, torch.Tensor]] = {}


def split_validation(labels: np.ndarray, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, fixed split of indices into (validation, stream)."""
    rng = np.random.default_rng(VALIDATION_SEED)
    val, stream = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        val.append(idx[:k])
        stream.append(idx[k:])
    return np.sort(np.concatenate(val)), np.sort(np.concatenate(stream))


def _as_choices(name: str, value: Any, check, everything: Sequence) -> tuple:
    if isinstance(value, str) and value == "random":
        return tuple(everything)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name}={value!r} is empty; give one value, a list of them or 'random'")
        return tuple(check(v, name) for v in value)
    return (check(value, name),)


class DistributionShiftCore(BatchedCore):
    """## Description

    The agent is the operator of a deployed classifier (a zoo model, by default the
    standard digits CNN) that serves a stream of batches of ``batch_size`` test inputs.
    At a change point drawn uniformly in ``change_range`` the inputs shift: from then on
    every batch is corrupted (Gaussian noise, blur, contrast, brightness, rotation or
    pixelation at a severity 1-5, in the style of Hendrycks & Dietterich 2019, see
    :mod:`deploy_envs.topics.distribution_shift.corruptions`) or its labels follow a shifted prior
    (Lipton et al. 2018). The operator never sees labels: it sees what monitoring sees,
    a summary of the model's softmax outputs on the batch, and each step decides how much
    of the batch to defer to a human, whether to raise a shift alarm and whether to adapt.

    Half of the test split (stratified, fixed) is the operator's labelled validation set
    (``core.val_images``/``core.val_labels``: reference confidences for detectors, the
    confusion matrix for BBSE); the stream draws from the other half, with replacement.

    ## Action Space

    ``MultiDiscrete([len(defer_fractions), 2, 3])`` = ``(defer, alarm, adapt)``:

    * ``defer = j``: the ``defer_fractions[j]`` least confident inputs of the batch (by
      max-softmax, Hendrycks & Gimpel 2017) go to a human at ``defer_cost`` each; the rest
      are served. Default fractions 0, 0.1, 0.2, 0.3, 0.5.
    * ``alarm = 1``: declare that the inputs have shifted. Before the change point it is a
      false alarm (``false_alarm_cost``); the first alarm after it is the detection.
    * ``adapt``: ``0`` nothing; ``1`` BBSE prior recalibration: the env estimates the
      importance weights ``w`` from the predicted-class histogram of the last
      ``bbse_window`` batches (solve ``C^T w = mu_hat``, Lipton et al. 2018) and from the
      next batch on serves ``argmax p(y|x) w(y)`` (cost ``bbse_cost``); ``2`` fine-tune:
      a human labels ``finetune_samples`` inputs of the current stream (``label_cost``
      each) and the model's last linear layer is fine-tuned on them (``finetune_steps``
      full-batch gradient steps from its current weights). Recomputing normalization
      statistics (test-time BN adaptation) is not offered: the zoo CNNs have no
      normalization layers; fine-tuning the last layer is the cheapest labelled
      adaptation that exists for every zoo model, and BBSE the label-free one for label
      shift. Adaptations act after the current batch is served.

    ## Observation Space

    ``Box(0, 1, (28,), float32)`` for 10 classes (see ``obs_slices``):

    | part | size | content |
    |---|---|---|
    | ``confidence_quantiles`` | 11 | max-softmax quantiles 0, 0.1, ..., 1 of the batch (sorted) |
    | ``mean_confidence`` | 1 | mean max-softmax |
    | ``mean_entropy`` | 1 | mean predictive entropy / log K |
    | ``mean_margin`` | 1 | mean top-1 minus top-2 probability |
    | ``predicted_histogram`` | K | fraction of the batch predicted as each class |
    | ``progress`` | 1 | step / horizon |
    | ``alarm_raised`` | 1 | whether the operator has raised an alarm this episode |
    | ``bbse_active``, ``finetuned`` | 2 | whether each adaptation is in force |

    Labels, the change point and the shift never appear in the observation.

    ## Rewards

    Per input of the batch: +1 for a correct served prediction, ``-wrong_cost`` for a
    wrong one, ``-defer_cost`` for a deferred one, divided by ``batch_size``; minus
    ``false_alarm_cost`` per false alarm, ``delay_cost`` per step in which the shift is
    active and not yet detected (including the step of detection, so detection delay 0
    costs one ``delay_cost``), ``bbse_cost`` per BBSE adaptation and
    ``label_cost * finetune_samples / batch_size`` per fine-tuning.

    ## Starting State

    The unadapted model, a change point uniform in ``change_range`` (inclusive), a shift
    kind uniform over ``corruption`` and a severity uniform over ``severity`` (each a
    value, a list, or ``"random"`` for all), and for label shift a prior drawn from
    Dirichlet(alpha) with alpha set by the severity. The first batch is observed.

    ## Episode End

    Terminates after ``horizon`` batches (the step count is in the observation).

    ## Info

    Per step: ``accuracy`` (on the served inputs of the batch), ``coverage`` (fraction
    served), ``model_accuracy`` (on the whole batch), ``shift_active``, ``detected``,
    ``detection_delay`` (steps from the change point to the detection, present once
    detected), ``false_alarms`` (this episode), ``change_point``, ``shift_kind`` (index
    into ``SHIFT_KINDS``), ``shift_severity``. Over the episode so far: ``served_accuracy`` and
    ``served_coverage``; over its shifted steps (present once the shift started)
    ``shifted_accuracy``, ``shifted_coverage`` and ``shifted_model_accuracy``; over its
    clean steps ``clean_accuracy``.

    ## Arguments

    * ``dataset`` (``"digits"``), ``victim``: zoo model (``"standard"``, ``"madry"`` or a full name).
    * ``batch_size`` (32), ``horizon`` (50), ``change_range`` ((10, 40), inclusive; 0 = shifted from the start).
    * ``corruption``: a kind in ``SHIFT_KINDS`` (six corruptions and ``"label_shift"``), a list, or ``"random"``.
    * ``severity``: 1-5, a list, or ``"random"``.
    * ``defer_fractions`` (0, 0.1, 0.2, 0.3, 0.5; the first must be 0).
    * ``wrong_cost`` (1), ``defer_cost`` (0.3), ``false_alarm_cost`` (2), ``delay_cost`` (0.2),
      ``bbse_cost`` (0.05), ``label_cost`` (0.3).
    * ``bbse_window`` (5 batches), ``finetune_samples`` (32), ``finetune_steps`` (25), ``finetune_lr``
      (0.005: the digits zoo CNN's penultimate features have norms up to about 90, so much
      larger steps overshoot; at 0.5 fine-tuning made the model worse than not adapting).
    * ``device``: torch device.

    ## Version History

    * v0: initial release (``finetune_lr`` default lowered from 0.5 to 0.005 within v0: at
      0.5 fine-tuning lowered the accuracy it was meant to restore).
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        victim: Any = "standard",
        batch_size: int = 32,
        horizon: int = 50,
        change_range: Sequence[int] = (10, 40),
        corruption: str | Sequence[str] = "random",
        severity: int | str | Sequence[int] = "random",
        defer_fractions: Sequence[float] = DEFER_FRACTIONS,
        wrong_cost: float = 1.0,
        defer_cost: float = 0.3,
        false_alarm_cost: float = 2.0,
        delay_cost: float = 0.2,
        bbse_cost: float = 0.05,
        label_cost: float = 0.3,
        bbse_window: int = 5,
        finetune_samples: int = 32,
        finetune_steps: int = 25,
        finetune_lr: float = 0.005,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.batch_size = B = check_positive("batch_size", batch_size, integer=True)
        self.horizon = check_positive("horizon", horizon, integer=True)
        if not isinstance(change_range, (list, tuple)) or len(change_range) != 2:
            raise ValueError(f"change_range={change_range!r} must be a pair (first, last) of steps")
        lo = check_number("change_range[0]", change_range[0], low=0, high=self.horizon - 1, integer=True)
        hi = check_number("change_range[1]", change_range[1], low=lo, high=self.horizon - 1, integer=True)
        self.change_range = (lo, hi)
        self.kinds = _as_choices("corruption", corruption, check_corruption, SHIFT_KINDS)
        self.kind_index = np.array([SHIFT_KINDS.index(k) for k in self.kinds])
        self.severities = np.array(_as_choices("severity", severity, check_severity, SEVERITIES))
        self._noise_sigma = torch.tensor([0.0] + [param("gaussian_noise", v) for v in SEVERITIES])  # by severity
        fr = tuple(check_probability(f"defer_fractions[{i}]", f) for i, f in enumerate(defer_fractions))
        if not fr or fr[0] != 0.0 or any(b <= a for a, b in zip(fr, fr[1:])) or fr[-1] >= 1.0:
            raise ValueError(f"defer_fractions={defer_fractions!r} must start at 0, increase, and stay below 1")
        self.defer_fractions = fr
        self.defer_counts = np.array([int(round(f * B)) for f in fr])
        self.wrong_cost = check_number("wrong_cost", wrong_cost, low=0.0)
        self.defer_cost = check_number("defer_cost", defer_cost, low=0.0)
        self.false_alarm_cost = check_number("false_alarm_cost", false_alarm_cost, low=0.0)
        self.delay_cost = check_number("delay_cost", delay_cost, low=0.0)
        self.bbse_cost = check_number("bbse_cost", bbse_cost, low=0.0)
        self.label_cost = check_number("label_cost", label_cost, low=0.0)
        self.bbse_window = check_positive("bbse_window", bbse_window, integer=True)
        self.finetune_samples = check_positive("finetune_samples", finetune_samples, integer=True)
        self.finetune_steps = check_positive("finetune_steps", finetune_steps, integer=True)
        self.finetune_lr = check_positive("finetune_lr", finetune_lr)

        self.victim = Victim.build(victim, dataset=dataset, device=device, split="test")
        model = self.victim.model
        head = getattr(model, "head", None)
        if not (isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear) and hasattr(model, "features")):
            raise ValueError(f"victim={victim!r} must be a zoo CNN with .features and a .head ending in nn.Linear (last-layer fine-tuning)")
        self.model = model
        self.dev = self.victim.device
        self.W0 = head[-1].weight.detach().clone()  # (K, H)
        self.b0 = head[-1].bias.detach().clone()  # (K,)
        self.K = K = self.victim.num_classes
        self.image_shape = tuple(self.victim.image_shape)
        self.d = int(np.prod(self.image_shape))
        images = self.victim.images.reshape(-1, self.d)
        labels = self.victim.labels
        val, stream = split_validation(labels)
        self.val_images, self.val_labels = images[val], labels[val]
        self.stream_images, self.stream_labels = images[stream], labels[stream]
        self._stream_t = torch.from_numpy(np.ascontiguousarray(self.stream_images)).to(self.dev)
        counts = np.bincount(self.stream_labels, minlength=K)
        if (counts == 0).any():
            raise ValueError(f"dataset={dataset!r}: some class has no stream inputs; label shift needs every class")
        self.class_count = counts
        self.by_class = np.zeros((K, counts.max()), np.int64)
        for c in range(K):
            self.by_class[c, : counts[c]] = np.flatnonzero(self.stream_labels == c)
        with torch.no_grad():
            val_logits = self.model(torch.from_numpy(self.val_images).to(self.dev).view(-1, *self.image_shape))
        val_probs = torch.softmax(val_logits, 1).cpu().numpy()
        self.val_confidence = val_probs.max(1)
        self.val_predictions = val_probs.argmax(1)
        self.confusion = joint_confusion(self.val_labels, self.val_predictions, K)
        self.source_prior = np.bincount(self.val_labels, minlength=K) / len(self.val_labels)
        self._build_feature_table((self.victim.name, dataset, str(self.dev)) if isinstance(victim, str) else None)

        parts = [
            ("confidence_quantiles", len(QUANTILES)),
            ("mean_confidence", 1),
            ("mean_entropy", 1),
            ("mean_margin", 1),
            ("predicted_histogram", K),
            ("progress", 1),
            ("alarm_raised", 1),
            ("bbse_active", 1),
            ("finetuned", 1),
        ]
        self.single_observation_space, self.obs_slices = flat_box([(name, size, 0.0, 1.0) for name, size in parts])
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.MultiDiscrete(np.array([len(fr), 2, 3]))
        pos = QUANTILES * (B - 1)
        self._q_lo = np.floor(pos).astype(np.int64)
        self._q_hi = np.minimum(self._q_lo + 1, B - 1)
        self._q_frac = (pos - self._q_lo).astype(np.float32)

        n = self.num_envs
        H = self.W0.shape[1]
        self.W = self.W0.expand(n, K, H).clone()
        self.b = self.b0.expand(n, K).clone()
        self.log_w = torch.zeros(n, K, device=self.dev)
        self.t = np.zeros(n, np.int64)
        self.change_point = np.zeros(n, np.int64)
        self.kind = np.zeros(n, np.int64)
        self.severity = np.ones(n, np.int64)
        self.prior = np.full((n, K), 1.0 / K)
        self.batch_labels = np.zeros((n, B), np.int64)
        # the current batch's max-softmax confidence and predicted class per input
        self.confidence = np.zeros((n, B), np.float32)
        self.predicted = np.zeros((n, B), np.int64)
        self.pred_hist = np.zeros((n, self.bbse_window, K))
        self.detected = np.zeros(n, bool)
        self.delay = np.zeros(n, np.int64)
        self.false_alarms = np.zeros(n, np.int64)
        self.alarm_raised = np.zeros(n, bool)
        self.bbse_active = np.zeros(n, bool)
        self.finetuned = np.zeros(n, bool)
        # the episode so far, step by step (for the picture): mean confidence, the model's accuracy on the batch, alarm raised
        self.history = np.full((n, self.horizon + 1, 3), np.nan)
        # episode tallies: served correct, served, batch inputs, model correct (clean / shifted)
        self.tally = np.zeros((n, 2, 4), np.int64)

    # -------------------------------------------------------------- drawing
    def _build_feature_table(self, cache_key: tuple | None) -> None:
        """Penultimate features of every stream input under every deterministic input variant.

        The model below its last layer is frozen, and every corruption except Gaussian noise
        is a deterministic function of the image (rotation: of the image and the sign of the
        angle), so the features of the clean stream and of each (corruption, severity[, sign])
        variant are computed once (one batched pass) and looked up per step; only Gaussian
        noise needs a live forward pass. Lookup and live pass give the same numbers. The
        table of a zoo model is shared by all envs of the process (``_FEATURE_CACHE``).
        """
        if cache_key is not None and cache_key in _FEATURE_CACHE:
            self.variant, self.feat_table = _FEATURE_CACHE[cache_key]
            return
        self.variant = {}
        chunks = [self._stream_t.view(-1, *self.image_shape)]
        for kind, name in enumerate(SHIFT_KINDS):
            if name in (LABEL_SHIFT, "gaussian_noise"):
                continue
            for sev in SEVERITIES:
                for sign in (-1, 1) if name == "rotation" else (0,):
                    r = None if sign == 0 else np.full(len(self.stream_labels), float(sign), np.float32)
                    self.variant[(kind, sev, sign)] = len(chunks)
                    chunks.append(corrupt(chunks[0], name, sev, randomness=r))
        x = torch.cat(chunks)
        self.feat_table = torch.cat([self._penultimate(x[i : i + 4096]) for i in range(0, len(x), 4096)])
        if cache_key is not None:
            _FEATURE_CACHE[cache_key] = (self.variant, self.feat_table)

    def _penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen model below its last layer on images ``(n, C, H, W)``."""
        with torch.no_grad():
            return self.model.head[:-1](self.model.features(x))

    def _draw_features(self, idx: np.ndarray, size: int, shifted: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Draw ``size`` stream inputs per copy in ``idx`` (shifted where ``shifted``); return their features and labels."""
        k = len(idx)
        N = len(self.stream_labels)
        rows = np.empty((k, size), np.int64)
        flat = np.empty((k, size), np.int64)
        noisy: list[tuple[int, np.ndarray]] = []
        for j, i in enumerate(idx):  # per-copy draws, each from the copy's own generator
            rng = self.rngs[i]
            kind = int(self.kind[i])
            name = SHIFT_KINDS[kind]
            if shifted[j] and name == LABEL_SHIFT:
                # what rng.choice(K, size, p=prior) draws (the same uniforms, the same
                # inverse-CDF lookup), without its per-call checks of p
                cdf = np.cumsum(self.prior[i])
                cdf /= cdf[-1]
                y = cdf.searchsorted(rng.random(size), side="right")
                rows[j] = self.by_class[y, rng.integers(0, self.class_count[y])]
                flat[j] = rows[j]
                continue
            # uniform stream rows: floor(u * N) of uniforms in [0, 1) (Generator.random costs a
            # fraction of Generator.integers per call, and this runs per copy and step)
            rows[j] = rows_j = np.minimum((rng.random(size) * N).astype(np.int64), N - 1)
            if not shifted[j]:
                flat[j] = rows_j
            elif name == "gaussian_noise":
                flat[j] = rows_j
                noisy.append((j, draw_randomness(name, rng, size, self.image_shape)))
            elif name == "rotation":
                signs = draw_randomness(name, rng, size, self.image_shape)
                sev = int(self.severity[i])
                v = np.where(signs > 0, self.variant[(kind, sev, 1)], self.variant[(kind, sev, -1)])
                flat[j] = v * N + rows_j
            else:
                flat[j] = self.variant[(kind, int(self.severity[i]), 0)] * N + rows_j
        h = self.feat_table[torch.from_numpy(flat.reshape(-1))].view(k, size, -1)
        if noisy:
            sel = np.array([j for j, _ in noisy])
            noise = np.concatenate([r for _, r in noisy])
            x = self._stream_t[torch.from_numpy(rows[sel].reshape(-1))].view(-1, *self.image_shape)
            # gaussian_noise(x, severity, noise) for every noisy input at once: x + sigma * noise, clipped
            sigma = self._noise_sigma[self.severity[idx[sel]]].repeat_interleave(size).view(-1, 1, 1, 1)
            xs = torch.from_numpy(noise).view_as(x).mul_(sigma).add_(x).clamp_(0.0, 1.0)
            live = self._penultimate(xs)
            h = h.clone()
            h[torch.from_numpy(sel)] = live.view(len(sel), size, -1)
        return h, self.stream_labels[rows]

    def _serve_probs(self, idx: np.ndarray, h: torch.Tensor) -> np.ndarray:
        """Softmax of the served model (per-copy last layer and BBSE log-weights) on features ``h``.

        Laid out ``(copies, K, batch)``: with the class axis outside the batch axis, every
        reduction over the K classes runs over contiguous rows of the batch (numpy reduces a
        short innermost axis several times slower).
        """
        ti = torch.from_numpy(idx)
        with torch.no_grad():
            logits = torch.baddbmm((self.b[ti] + self.log_w[ti])[:, :, None], self.W[ti], h.transpose(1, 2))
        z = logits.cpu().numpy()
        z -= z.max(1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(1, keepdims=True)
        return z

    def _next_batch(self, idx: np.ndarray) -> np.ndarray:
        shifted = self.t[idx] >= self.change_point[idx]
        h, labels = self._draw_features(idx, self.batch_size, shifted)
        probs = self._serve_probs(idx, h)  # (k, K, B)
        self.batch_labels[idx] = labels
        obs = self._observe(idx, probs)
        t = np.minimum(self.t[idx], self.horizon)
        self.history[idx, t, 0] = self.confidence[idx].mean(1)
        self.history[idx, t, 1] = (self.predicted[idx] == labels).mean(1)
        return obs

    def _observe(self, idx: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Observation of copies ``idx`` from their batch's softmax ``probs`` ``(k, K, B)``; keeps confidence and predictions."""
        k, K, B = probs.shape
        conf = probs.max(1)
        pred = probs.argmax(1)
        self.confidence[idx] = conf
        self.predicted[idx] = pred
        srt = np.sort(conf, 1)
        obs = np.empty((k, self.obs_dim), np.float32)
        s = self.obs_slices
        obs[:, s["confidence_quantiles"]] = srt[:, self._q_lo] * (1 - self._q_frac) + srt[:, self._q_hi] * self._q_frac
        obs[:, s["mean_confidence"]] = conf.mean(1, keepdims=True)
        ent = -(probs * np.log(np.maximum(probs, 1e-12))).sum(1)
        obs[:, s["mean_entropy"]] = (ent.mean(1) / np.log(K))[:, None]
        rest = probs.copy()  # the runner-up: the largest probability once the top one is removed
        rest[np.arange(k)[:, None], pred, np.arange(B)[None, :]] = -1.0
        obs[:, s["mean_margin"]] = (conf - rest.max(1)).mean(1, keepdims=True)
        hist = np.bincount((pred + K * np.arange(k)[:, None]).reshape(-1), minlength=k * K).reshape(k, K) / B
        obs[:, s["predicted_histogram"]] = hist
        obs[:, s["progress"]] = (self.t[idx] / self.horizon)[:, None]
        obs[:, s["alarm_raised"]] = self.alarm_raised[idx, None]
        obs[:, s["bbse_active"]] = self.bbse_active[idx, None]
        obs[:, s["finetuned"]] = self.finetuned[idx, None]
        # keep a window of predicted-class histograms for BBSE
        self.pred_hist[idx] = np.roll(self.pred_hist[idx], 1, axis=1)
        self.pred_hist[idx, 0] = hist
        return np.clip(obs, 0.0, 1.0, out=obs)

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        lo, hi = self.change_range
        for i in idx:
            rng = self.rngs[i]
            self.change_point[i] = rng.integers(lo, hi + 1)
            self.kind[i] = self.kind_index[rng.integers(len(self.kind_index))]
            self.severity[i] = self.severities[rng.integers(len(self.severities))]
            if SHIFT_KINDS[self.kind[i]] == LABEL_SHIFT:
                self.prior[i] = draw_label_prior(rng, self.K, int(self.severity[i]))
            else:
                self.prior[i] = 1.0 / self.K
        ti = torch.from_numpy(np.asarray(idx))
        self.W[ti] = self.W0
        self.b[ti] = self.b0
        self.log_w[ti] = 0.0
        self.t[idx] = 0
        self.pred_hist[idx] = 0.0
        for arr in (self.detected, self.alarm_raised, self.bbse_active, self.finetuned):
            arr[idx] = False
        self.delay[idx] = 0
        self.false_alarms[idx] = 0
        self.tally[idx] = 0
        self.history[idx] = np.nan
        obs = self._next_batch(np.asarray(idx))
        info = {
            "change_point": self.change_point[idx].copy(),
            "shift_kind": self.kind[idx].copy(),
            "shift_severity": self.severity[idx].copy(),
        }
        return obs, info

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        idx = np.asarray(idx)
        k, B = len(idx), self.batch_size
        defer, alarm, adapt = actions[:, 0], actions[:, 1].astype(bool), actions[:, 2]
        conf = self.confidence[idx]
        correct = self.predicted[idx] == self.batch_labels[idx]
        # defer the n_defer least confident inputs (stable order breaks ties the same way everywhere)
        n_defer = self.defer_counts[defer]
        rank = np.argsort(np.argsort(conf, axis=1, kind="stable"), axis=1, kind="stable")
        served = rank >= n_defer[:, None]
        n_served = served.sum(1)
        n_correct = (correct & served).sum(1)
        n_model = correct.sum(1)
        shifted = self.t[idx] >= self.change_point[idx]

        reward = (n_correct - self.wrong_cost * (n_served - n_correct) - self.defer_cost * n_defer) / B
        false_alarm = alarm & ~shifted
        new_detect = alarm & shifted & ~self.detected[idx]
        self.false_alarms[idx] += false_alarm
        self.alarm_raised[idx] |= alarm
        self.history[idx, self.t[idx], 2] = alarm
        self.delay[idx[new_detect]] = self.t[idx[new_detect]] - self.change_point[idx[new_detect]]
        undetected = shifted & ~self.detected[idx]  # includes the step of detection
        self.detected[idx] |= new_detect
        reward = reward - self.false_alarm_cost * false_alarm - self.delay_cost * undetected

        sh = shifted.astype(np.int64)
        self.tally[idx, sh] += np.stack([n_correct, n_served, np.full(k, B), n_model], 1)

        # adaptations act from the next batch on
        do_bbse = adapt == ADAPT_BBSE
        if do_bbse.any():
            j = idx[do_bbse]
            filled = np.minimum(self.t[j] + 1, self.bbse_window)
            mu = self.pred_hist[j].sum(1) / filled[:, None]
            w = bbse_weights(self.confusion, mu)
            self.log_w[torch.from_numpy(j)] = torch.from_numpy(np.log(np.maximum(w, 1e-6))).float()
            self.bbse_active[j] = True
            reward[do_bbse] -= self.bbse_cost
        do_ft = adapt == ADAPT_FINETUNE
        if do_ft.any():
            self._finetune(idx[do_ft], shifted[do_ft])
            reward[do_ft] -= self.label_cost * self.finetune_samples / B

        info = {
            "accuracy": n_correct / np.maximum(n_served, 1),
            "coverage": n_served / B,
            "model_accuracy": n_model / B,
            "shift_active": shifted,
            "detected": self.detected[idx].copy(),
            "detection_delay": self.delay[idx].astype(np.float64),
            "_detection_delay": self.detected[idx].copy(),
            "false_alarms": self.false_alarms[idx].copy(),
            "change_point": self.change_point[idx].copy(),
            "shift_kind": self.kind[idx].copy(),
            "shift_severity": self.severity[idx].copy(),
        }
        tal = self.tally[idx]
        both = tal.sum(1)
        info["served_accuracy"] = both[:, 0] / np.maximum(both[:, 1], 1)
        info["served_coverage"] = both[:, 1] / np.maximum(both[:, 2], 1)
        has_shift = tal[:, 1, 2] > 0
        info["shifted_accuracy"] = tal[:, 1, 0] / np.maximum(tal[:, 1, 1], 1)
        info["_shifted_accuracy"] = has_shift
        info["shifted_coverage"] = tal[:, 1, 1] / np.maximum(tal[:, 1, 2], 1)
        info["_shifted_coverage"] = has_shift.copy()
        info["shifted_model_accuracy"] = tal[:, 1, 3] / np.maximum(tal[:, 1, 2], 1)
        info["_shifted_model_accuracy"] = has_shift.copy()
        has_clean = tal[:, 0, 2] > 0
        info["clean_accuracy"] = tal[:, 0, 0] / np.maximum(tal[:, 0, 1], 1)
        info["_clean_accuracy"] = has_clean

        self.t[idx] += 1
        terminated = self.t[idx] >= self.horizon
        obs = self._next_batch(idx)
        return obs, np.asarray(reward, np.float64), terminated, np.zeros(k, bool), info

    def _finetune(self, j: np.ndarray, shifted: np.ndarray) -> None:
        """Fine-tune the last layer of copies ``j`` on ``finetune_samples`` labelled inputs of their current stream.

        Full-batch gradient descent on each copy's mean cross-entropy, batched over the
        copies, with no autograd graph. The features ``h`` are fixed, so a step on the
        linear layer, ``W -= lr * dz^T h`` and ``b -= lr * 1^T dz`` (``dz`` = ``(softmax -
        onehot) / n``), moves the logits by ``-lr * (h h^T + 1 1^T) dz``: the loop updates
        the logits (kept ``K x n``) through that ``n x n`` Gram matrix, accumulates the ``dz``,
        and applies their sum to ``W`` and ``b`` once at the end (the same iterates as
        updating ``W`` and ``b`` every step, with one small product per step instead of two).
        """
        h, labels = self._draw_features(j, self.finetune_samples, shifted)
        tj = torch.from_numpy(j)
        W = self.W[tj]  # (k, K, H), a copy (advanced indexing)
        b = self.b[tj]  # (k, K)
        k, n = len(j), self.finetune_samples
        y = torch.from_numpy(labels).to(self.dev)
        # logits and targets laid out (k, K, n): the softmax reductions over the K classes then
        # run over contiguous rows of the n samples, which is faster on CPU
        target = F.one_hot(y, self.K).to(h.dtype).div_(n).transpose(1, 2).contiguous()  # (k, K, n)
        lr = self.finetune_lr
        with torch.no_grad():
            gram = torch.baddbmm(torch.ones(k, n, n, dtype=h.dtype, device=h.device), h, h.transpose(1, 2))  # symmetric
            z = torch.baddbmm(b[:, :, None], W, h.transpose(1, 2))  # (k, K, n) logits
            dz_sum = torch.zeros_like(z)
            for _ in range(self.finetune_steps):
                # exponents below EXP_FLOOR are clamped: exp of them would underflow to
                # subnormal floats, which make this exp and the next product many times slower
                # on x86 CPUs; the probabilities they stand for (< 1e-13) change nothing here
                e = (z - z.amax(1, keepdim=True)).clamp_(min=EXP_FLOOR).exp_()
                dz = e.div_(e.sum(1, keepdim=True).mul_(n)).sub_(target)  # d(mean CE)/d logits
                dz_sum.add_(dz)
                z.baddbmm_(dz, gram, alpha=-lr)
            W.sub_(torch.bmm(dz_sum, h), alpha=lr)
            b.sub_(dz_sum.sum(2), alpha=lr)
        self.W[tj] = W
        self.b[tj] = b
        self.finetuned[j] = True

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        kind = SHIFT_KINDS[self.kind[i]]
        conf = self.confidence[i]
        state = "shifted" if self.t[i] >= self.change_point[i] else "clean"
        return (
            f"step {self.t[i]}/{self.horizon} [{state}] batch mean confidence {conf.mean():.3f}; "
            f"alarms: detected={bool(self.detected[i])} false={int(self.false_alarms[i])}; "
            f"adapt: bbse={bool(self.bbse_active[i])} finetuned={bool(self.finetuned[i])}; "
            f"(hidden: {kind} severity {self.severity[i]} from step {self.change_point[i]})"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """The stream so far (mean confidence, the model's batch accuracy, alarms, the hidden change point) and the
        current batch's confidences against the clean validation set's."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(600, 260), grid=(1, 2), width_ratios=(1.6, 1), margins={"left": 0.07, "wspace": 0.25, "bottom": 0.17})
        t = int(self.t[i])
        state = "shifted" if t >= self.change_point[i] else "clean"
        adapt = ", ".join(a for a, on in (("BBSE", self.bbse_active[i]), ("fine-tuned", self.finetuned[i])) if on) or "none"
        ax_t, ax_h = sk.begin(f"DistributionShift: step {t}/{self.horizon} [{state}], detected {bool(self.detected[i])}, "
                              f"false alarms {int(self.false_alarms[i])}, adaptation {adapt}", fontsize=8)
        h = self.history[i, : t + 1]
        x = np.arange(len(h))
        ax_t.plot(x, h[:, 0], color=PALETTE["blue"], marker=".", label="mean confidence")
        ax_t.plot(x, h[:, 1], color=PALETTE["green"], marker=".", label="model accuracy")
        alarms = np.flatnonzero(h[:, 2] == 1)
        ax_t.scatter(alarms, np.full(len(alarms), 0.03), marker="^", color=PALETTE["red"], label="alarm", zorder=3)
        ax_t.axvline(self.change_point[i], color=PALETTE["grey"], ls="--", lw=1)
        ax_t.text(self.change_point[i], 1.0, f" hidden: {SHIFT_KINDS[self.kind[i]]} s{self.severity[i]}", fontsize=6, va="top", color=PALETTE["grey"])
        ax_t.set_xlim(0, self.horizon)
        ax_t.set_ylim(0, 1.05)
        ax_t.set_xlabel("step", fontsize=8)
        ax_t.legend(fontsize=6, loc="lower left")
        bins = np.linspace(0, 1, 21)
        ref, _ = np.histogram(self.val_confidence, bins, density=True)
        now, _ = np.histogram(self.confidence[i], bins, density=True)
        ax_h.stairs(ref, bins, color=PALETTE["grey"], label="validation (clean)", fill=True, alpha=0.4)
        ax_h.stairs(now, bins, color=PALETTE["orange"], label="current batch", linewidth=1.5)
        ax_h.set_xlabel("confidence", fontsize=8)
        ax_h.set_title("confidence distribution", fontsize=8)
        ax_h.legend(fontsize=6, loc="upper left")
        for ax in (ax_t, ax_h):
            ax.tick_params(labelsize=7)
        return sk.finish()

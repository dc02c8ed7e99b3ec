"""``deploy_envs/TrainingControl-v0``: the agent is the training schedule of a small network."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore, validate_batch
from deploy_envs.core.validation import check_device, check_number, check_positive, check_probability
from deploy_envs.data import load_dataset

logger = logging.getLogger(__name__)

SPLIT_SEED = 0
"""Seed of the fixed permutation that picks the train and validation inputs out of the dataset's train split."""
LOSS_CAP = 10.0
"""Losses are reported clipped to [0, LOSS_CAP] (chance on 10 classes is ln 10 = 2.3)."""
GRAD_LOG_RANGE = (-6.0, 3.0)
"""Bounds of the observed log10 gradient norm."""
OBS_NAMES = (
    "train_loss", "train_accuracy", "val_loss", "val_accuracy", "log10_grad_norm", "progress",
    "best_val_accuracy", "last_lr_action", "last_batch_action", "last_weight_decay_action",
)
ACTION_NAMES = ("learning rate (log scale)", "batch size (log2 scale)", "weight decay")


def _is_power_of_two(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


class TrainingControlCore(BatchedCore):
    """## Description

    The agent is the training schedule of a small network. Each step it sets the learning
    rate (log scale), the minibatch size and the weight decay for the next chunk of
    ``steps_per_action`` steps of SGD with momentum on a one-hidden-layer ReLU network
    (``hidden`` units, cross-entropy) that classifies digits (sklearn's 8x8 digits by
    default); the env runs the chunk and reports training and validation loss and
    accuracy, the gradient norm and the progress through the budget of ``horizon`` chunks.
    The test accuracy, on a split the agent never sees, is ``info["hidden_performance"]``.

    With ``label_noise`` a fraction of the training (and validation) labels is replaced by
    uniformly random labels, and with ``random_labels`` all of them, as in Zhang et al.
    2017 ("Understanding deep learning requires rethinking generalization", ICLR): the
    network still fits random labels perfectly, only more slowly, while test accuracy
    stays at chance; under label noise it first learns the true pattern and then memorizes
    the noise (Arpit et al. 2017, "A Closer Look at Memorization in Deep Networks"), so
    stopping on validation beats training to convergence.

    The core trains the networks of all copies at once: their parameters are stacked along
    a leading batch dimension and every SGD step is a handful of batched matrix products
    (``torch.bmm``) over the copies that share a batch size; the gradients are written out
    by hand (no autograd), so the per-step cost is a few kernel calls for the whole batch.

    ## Action Space

    ``Box(-1, 1, (3,), float32)``, each entry mapped linearly onto a range:

    * ``action[0]``: learning rate on a log scale, ``-1`` -> ``lr_range[0]``, ``1`` -> ``lr_range[1]``;
    * ``action[1]``: batch size on a log2 scale, ``-1`` -> ``batch_size_range[0]``,
      ``1`` -> ``batch_size_range[1]``, rounded to the nearest power of two;
    * ``action[2]``: weight decay (L2, added to the gradient), ``-1`` -> 0, ``1`` -> ``max_weight_decay``.

    :meth:`decode_actions` gives the three values; :meth:`encode_actions` the inverse.

    ## Observation Space

    ``Box(low, high, (10,), float32)``: ``train_loss`` and ``val_loss`` in [0, 10]
    (cross-entropy, clipped), ``train_accuracy`` and ``val_accuracy`` in [0, 1] (on the
    whole training and validation splits, with their possibly noisy labels), the log10
    gradient norm of the chunk (mean over its steps, clipped to [-6, 3]; -6 at reset),
    ``progress`` = step / horizon, ``best_val_accuracy`` so far, and the last action (zeros
    at reset). The test split never enters the observation.

    ## Rewards

    Validation improvement: ``val_accuracy`` after the chunk minus before it, so the
    return is the final validation accuracy minus the initial one. A network that diverges
    (non-finite loss) counts as accuracy 0.

    ## Starting State

    Fresh weights (He-normal first layer, normal(0, 1/hidden) second layer, zero biases)
    and, for ``label_noise``/``random_labels``, freshly drawn labels, all from the copy's
    random generator; the observation is the evaluation of the untrained network.

    ## Episode End

    Terminates after ``horizon`` chunks (the budget; progress is in the observation), or
    at once when the network diverges (``info["diverged"]``).

    ## Info

    Per step: ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``,
    ``hidden_performance`` (test accuracy, true labels), ``test_loss``,
    ``generalization_gap`` (train minus test accuracy), ``grad_norm``, the applied
    ``learning_rate``, ``batch_size`` and ``weight_decay``, ``sgd_steps`` and
    ``samples_seen`` so far, ``best_val_accuracy`` and ``early_stopping_accuracy`` (the
    test accuracy of the checkpoint with the best validation accuracy so far: what early
    stopping with restored weights would deploy), ``fitted`` (training accuracy has reached
    ``fit_threshold``), ``steps_to_fit`` (SGD steps until it did; while not fitted, the
    steps so far, a censored count), ``diverged``.

    ## Arguments

    * ``dataset`` (``"digits"``): any dataset of :func:`deploy_envs.data.load_dataset`.
    * ``train_size`` (256), ``val_size`` (256): inputs drawn (fixed permutation) from the
      dataset's train split; the test split is the hidden one.
    * ``hidden`` (32): hidden units. ``momentum`` (0.9).
    * ``horizon`` (40 chunks), ``steps_per_action`` (25 SGD steps per chunk).
    * ``lr_range`` ((1e-3, 1.0)): 0 < low < high <= 10.
    * ``batch_size_range`` ((8, 128)): powers of two, low <= high <= ``train_size``.
    * ``max_weight_decay`` (0.01).
    * ``label_noise`` (0.0): fraction in [0, 1] of labels replaced by random ones.
    * ``random_labels`` (False): every training/validation label random (Zhang et al. 2017).
    * ``fit_threshold`` (0.95): training accuracy that counts as fitted.
    * ``device`` (``"cpu"``): torch device (``"cuda"``, ``"cuda:1"``, ...) of the data, the copies' networks
      and their training; per step only the observations and infos come back to the host. A device
      this machine lacks is refused with a ``ValueError``.

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        train_size: int = 256,
        val_size: int = 256,
        hidden: int = 32,
        horizon: int = 40,
        steps_per_action: int = 25,
        lr_range: Sequence[float] = (1e-3, 1.0),
        batch_size_range: Sequence[int] = (8, 128),
        max_weight_decay: float = 0.01,
        momentum: float = 0.9,
        label_noise: float = 0.0,
        random_labels: bool = False,
        fit_threshold: float = 0.95,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        ds = load_dataset(dataset)
        n_avail = len(ds.y_train)
        self.train_size = check_number("train_size", train_size, low=10, high=n_avail - 1, integer=True)
        self.val_size = check_number("val_size", val_size, low=1, high=n_avail - self.train_size, integer=True)
        self.hidden = check_positive("hidden", hidden, integer=True)
        self.horizon = check_positive("horizon", horizon, integer=True)
        self.steps_per_action = check_positive("steps_per_action", steps_per_action, integer=True)
        if not isinstance(lr_range, (list, tuple)) or len(lr_range) != 2:
            raise ValueError(f"lr_range={lr_range!r} must be a pair (lowest, highest) of learning rates in (0, 10]")
        lo = check_number("lr_range[0]", lr_range[0], low=0.0, high=10.0, low_inclusive=False)
        hi = check_number("lr_range[1]", lr_range[1], low=lo, high=10.0, low_inclusive=False)
        self.lr_range = (lo, hi)
        if not isinstance(batch_size_range, (list, tuple)) or len(batch_size_range) != 2:
            raise ValueError(f"batch_size_range={batch_size_range!r} must be a pair (smallest, largest) of powers of two")
        blo = check_number("batch_size_range[0]", batch_size_range[0], low=1, high=self.train_size, integer=True)
        bhi = check_number("batch_size_range[1]", batch_size_range[1], low=blo, high=self.train_size, integer=True)
        if not (_is_power_of_two(blo) and _is_power_of_two(bhi)):
            raise ValueError(f"batch_size_range={batch_size_range!r} must hold powers of two (1, 2, 4, ..., at most train_size={self.train_size})")
        self.batch_size_range = (blo, bhi)
        self.max_weight_decay = check_number("max_weight_decay", max_weight_decay, low=0.0, high=1.0)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        self.label_noise = check_probability("label_noise", label_noise)
        if not isinstance(random_labels, (bool, np.bool_)):
            raise ValueError(f"random_labels={random_labels!r} must be True or False")
        self.random_labels = bool(random_labels)
        self.fit_threshold = check_number("fit_threshold", fit_threshold, low=0.0, high=1.0, low_inclusive=False)
        self.dev = self.device = check_device("device", device)

        # ---- data: fixed train/validation inputs from the train split, the test split hidden
        x = ds.x_train.reshape(n_avail, -1)
        perm = np.random.default_rng(SPLIT_SEED).permutation(n_avail)
        tr, va = perm[: self.train_size], perm[self.train_size : self.train_size + self.val_size]
        self.K = ds.num_classes
        self.d = x.shape[1]

        def as_t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

        self.x_train, self.x_val = as_t(x[tr].astype(np.float32)), as_t(x[va].astype(np.float32))
        self.x_test = as_t(ds.x_test.reshape(len(ds.y_test), -1).astype(np.float32))
        self.y_train_true, self.y_val_true = ds.y_train[tr].astype(np.int64), ds.y_train[va].astype(np.int64)
        self.y_test = as_t(ds.y_test.astype(np.int64))

        # ---- spaces
        self.single_action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        low = np.array([0, 0, 0, 0, GRAD_LOG_RANGE[0], 0, 0, -1, -1, -1], np.float32)
        high = np.array([LOSS_CAP, 1, LOSS_CAP, 1, GRAD_LOG_RANGE[1], 1, 1, 1, 1, 1], np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)

        # ---- per-copy state: each copy's parameters are one row of a flat buffer (W1, b1, W2, b2)
        N, d, H, K = self.num_envs, self.d, self.hidden, self.K
        self._shapes = ((d, H), (1, H), (H, K), (1, K))
        sizes = [a * b for a, b in self._shapes]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.n_params = self._offsets[-1]
        self.flat = torch.zeros(N, self.n_params, dtype=torch.float32, device=self.dev)
        self.velocity = torch.zeros_like(self.flat)
        self.params = self._views(self.flat)
        n, nv = self.train_size, self.val_size
        self.y_all = torch.zeros(N, n + nv + len(ds.y_test), dtype=torch.int64, device=self.dev)
        self.y_all[:, n + nv :] = self.y_test
        self.y_train, self.y_val = self.y_all[:, :n], self.y_all[:, n : n + nv]
        self.x_all = torch.cat([self.x_train, self.x_val, self.x_test])
        self.t = np.zeros(N, np.int64)
        self.sgd_steps = np.zeros(N, np.int64)
        self.samples_seen = np.zeros(N, np.int64)
        self.fit_step = np.full(N, -1, np.int64)
        self.metrics = np.zeros((N, 6), np.float64)  # train loss/acc, val loss/acc, test loss/acc
        self.best_val = np.zeros(N, np.float64)
        self.best_val_test = np.zeros(N, np.float64)
        self.grad_norm = np.zeros(N, np.float64)
        self.last_action = np.zeros((N, 3), np.float32)
        self.applied = np.zeros((N, 3), np.float64)  # lr, batch size, weight decay
        # the episode so far, chunk by chunk (for the picture): the six metrics, then lr, batch size, weight decay
        self.history = np.full((N, self.horizon + 1, 9), np.nan, np.float64)

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``W1, b1, W2, b2`` of the copies in ``flat`` (views sharing its storage)."""
        o = self._offsets
        return [flat[:, o[j] : o[j + 1]].view(-1, *self._shapes[j]) for j in range(4)]

    # ------------------------------------------------------------- actions
    def decode_actions(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map actions in [-1, 1]^3 to (learning rate, batch size, weight decay) per row."""
        a = np.asarray(actions, np.float64).reshape(-1, 3)
        u = (a + 1.0) / 2.0
        llo, lhi = math.log10(self.lr_range[0]), math.log10(self.lr_range[1])
        lr = 10.0 ** (llo + u[:, 0] * (lhi - llo))
        blo, bhi = math.log2(self.batch_size_range[0]), math.log2(self.batch_size_range[1])
        bs = (2 ** np.clip(np.round(blo + u[:, 1] * (bhi - blo)), blo, bhi)).astype(np.int64)
        wd = u[:, 2] * self.max_weight_decay
        return lr, bs, wd

    def encode_actions(self, lr: Any, batch_size: Any, weight_decay: Any) -> np.ndarray:
        """Inverse of :meth:`decode_actions` (values clipped into the ranges); broadcasts to rows ``(n, 3)``."""
        lr, bs, wd = np.broadcast_arrays(np.asarray(lr, np.float64), np.asarray(batch_size, np.float64), np.asarray(weight_decay, np.float64))
        llo, lhi = math.log10(self.lr_range[0]), math.log10(self.lr_range[1])
        blo, bhi = math.log2(self.batch_size_range[0]), math.log2(self.batch_size_range[1])
        a0 = 2 * (np.log10(np.clip(lr, *self.lr_range)) - llo) / (lhi - llo) - 1 if lhi > llo else np.zeros_like(lr)
        a1 = 2 * (np.log2(np.clip(bs, *self.batch_size_range)) - blo) / (bhi - blo) - 1 if bhi > blo else np.zeros_like(bs)
        a2 = 2 * np.clip(wd, 0, self.max_weight_decay) / self.max_weight_decay - 1 if self.max_weight_decay > 0 else -np.ones_like(wd)
        return np.atleast_2d(np.clip(np.stack([a0, a1, a2], -1), -1, 1).astype(np.float32))

    def validate_actions(self, actions: Any, batch: int) -> np.ndarray:
        try:
            return validate_batch(self.single_action_space, actions, batch)
        except ValueError as refused:
            try:
                arr = np.asarray(actions, dtype=np.float64)
            except (ValueError, TypeError):
                raise refused from None
            if arr.shape == (batch, 3):
                ranges = (f"lr_range={self.lr_range}", f"batch_size_range={self.batch_size_range}", f"[0, max_weight_decay={self.max_weight_decay}]")
                for j in range(3):
                    col = arr[:, j]
                    if not np.isfinite(col).all() or (np.abs(col) > 1).any():
                        raise ValueError(
                            f"action[{j}] ({ACTION_NAMES[j]}) = {col.tolist()} is outside [-1, 1]; "
                            f"-1 and 1 map to the ends of {ranges[j]}"
                        ) from None
            raise

    # ------------------------------------------------------------------ API
    def reset_indices(self, idx: np.ndarray, options: dict | None = None):
        idx = np.asarray(idx, np.int64)
        n, nv, K = self.train_size, self.val_size, self.K
        d, H = self.d, self.hidden
        W1 = np.empty((len(idx), d, H), np.float32)
        W2 = np.empty((len(idx), H, K), np.float32)
        ytr = np.empty((len(idx), n), np.int64)
        yva = np.empty((len(idx), nv), np.int64)
        for j, i in enumerate(idx):  # cheap per-copy draws from the copy's own generator
            rng = self.rngs[i]
            W1[j] = rng.standard_normal((d, H), dtype=np.float32) * np.float32(math.sqrt(2.0 / d))
            W2[j] = rng.standard_normal((H, K), dtype=np.float32) * np.float32(math.sqrt(1.0 / H))
            ytr[j], yva[j] = self._draw_labels(rng, self.y_train_true), self._draw_labels(rng, self.y_val_true)
        ti = torch.from_numpy(idx).to(self.dev)
        init = torch.zeros(len(idx), self.n_params, dtype=torch.float32)
        w1, _, w2, _ = self._views(init)
        w1.copy_(torch.from_numpy(W1))
        w2.copy_(torch.from_numpy(W2))
        self.flat[ti] = init.to(self.dev)
        self.velocity[ti] = 0.0
        self.y_train[ti] = torch.from_numpy(ytr).to(self.dev)
        self.y_val[ti] = torch.from_numpy(yva).to(self.dev)
        self.t[idx] = 0
        self.sgd_steps[idx] = 0
        self.samples_seen[idx] = 0
        self.fit_step[idx] = -1
        self.grad_norm[idx] = 0.0
        self.last_action[idx] = 0.0
        self.applied[idx] = 0.0
        m, _ = self._evaluate(idx)
        self.metrics[idx] = m
        self.history[idx] = np.nan
        self.history[idx, 0, :6] = m
        self.best_val[idx] = m[:, 3]
        self.best_val_test[idx] = m[:, 5]
        self._update_fit(idx)
        return self._observe(idx), self._info(idx, np.zeros(len(idx), bool))

    def _draw_labels(self, rng: np.random.Generator, true: np.ndarray) -> np.ndarray:
        if self.random_labels:
            return rng.integers(0, self.K, len(true))
        if self.label_noise > 0:
            flip = rng.random(len(true)) < self.label_noise
            return np.where(flip, rng.integers(0, self.K, len(true)), true)
        return true.copy()

    def step_indices(self, idx: np.ndarray, actions: np.ndarray):
        idx = np.asarray(idx, np.int64)
        lr, bs, wd = self.decode_actions(actions)
        k = self.steps_per_action
        batches = [self.rngs[i].integers(0, self.train_size, (k, b)) for i, b in zip(idx, bs)]
        gnorm = np.zeros(len(idx), np.float64)
        for b in np.unique(bs):  # copies that share a batch size train in one stack
            sel = np.flatnonzero(bs == b)
            gnorm[sel] = self._train_group(idx[sel], np.stack([batches[j] for j in sel]), lr[sel], wd[sel])
        self.t[idx] += 1
        self.sgd_steps[idx] += k
        self.samples_seen[idx] += k * bs
        self.grad_norm[idx] = gnorm
        self.last_action[idx] = actions
        self.applied[idx] = np.stack([lr, bs, wd], 1)
        prev_val = self.metrics[idx, 3].copy()
        m, diverged = self._evaluate(idx)
        self.metrics[idx] = m
        self.history[idx, np.minimum(self.t[idx], self.horizon)] = np.concatenate([m, self.applied[idx]], 1)
        better = m[:, 3] > self.best_val[idx]
        self.best_val[idx] = np.where(better, m[:, 3], self.best_val[idx])
        self.best_val_test[idx] = np.where(better, m[:, 5], self.best_val_test[idx])
        self._update_fit(idx)
        reward = m[:, 3] - prev_val
        terminated = (self.t[idx] >= self.horizon) | diverged
        if diverged.any():
            logger.debug("copies %s diverged", idx[diverged].tolist())
        return self._observe(idx), reward, terminated, np.zeros(len(idx), bool), self._info(idx, diverged)

    # --------------------------------------------------------------- training
    def _train_group(self, g: np.ndarray, batch_idx: np.ndarray, lr: np.ndarray, wd: np.ndarray) -> np.ndarray:
        """Run ``steps_per_action`` SGD steps on copies ``g`` (one batch size); return their mean gradient norms.

        Hand-written backward pass of ``mean cross-entropy(relu(x W1 + b1) W2 + b2)``, batched
        over the copies with ``bmm``; the update (weight decay, momentum, step) acts on each
        copy's flat parameter row in three calls for the whole stack.
        """
        tg = torch.from_numpy(g).to(self.dev)
        flat, vel = self.flat[tg], self.velocity[tg]  # copies, written back at the end
        W1, b1, W2, b2 = self._views(flat)
        G, k, B = batch_idx.shape
        ids = torch.from_numpy(batch_idx).to(self.dev)  # (G, k, B)
        X = self.x_train[ids]  # (G, k, B, d): the chunk's minibatches
        y = torch.gather(self.y_train[tg], 1, ids.view(G, -1)).view(G, k, B)
        target = torch.nn.functional.one_hot(y, self.K).to(torch.float32).div_(B)  # (G, k, B, K)
        neg_lr = torch.tensor(-lr, dtype=torch.float32, device=self.dev).view(G, 1)
        wd_t = torch.tensor(wd, dtype=torch.float32, device=self.dev).view(G, 1)
        mom = self.momentum
        norms = []
        for s in range(k):
            xb = X[:, s]
            h = torch.baddbmm(b1, xb, W1).clamp_min_(0.0)
            z = torch.baddbmm(b2, h, W2)
            e = (z - z.amax(-1, keepdim=True)).exp_()  # softmax, written out (faster than torch.softmax on CPU here)
            dz = e.div_(e.sum(-1, keepdim=True).mul_(B)).sub_(target[:, s])  # d(mean CE)/d logits
            gb2 = dz.sum(1, keepdim=True)
            gW2 = torch.bmm(h.transpose(1, 2), dz)
            dh = torch.bmm(dz, W2.transpose(1, 2)).mul_(h > 0)
            gb1 = dh.sum(1, keepdim=True)
            gW1 = torch.bmm(xb.transpose(1, 2), dh)
            grad = torch.cat([gW1.flatten(1), gb1.flatten(1), gW2.flatten(1), gb2.flatten(1)], 1)
            norms.append(torch.linalg.vector_norm(grad, dim=1))
            grad.addcmul_(wd_t, flat)  # weight decay: g + wd * p
            vel.mul_(mom).add_(grad)
            flat.addcmul_(neg_lr, vel)
        self.flat[tg] = flat
        self.velocity[tg] = vel
        return torch.stack(norms, 1).double().mean(1).cpu().numpy()

    def _evaluate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy of copies ``idx`` on train, validation and test: ``(len(idx), 6)``, and divergence flags."""
        ti = torch.from_numpy(idx).to(self.dev)
        W1, b1, W2, b2 = self._views(self.flat[ti])
        y = self.y_all[ti]
        logits = torch.baddbmm(b2, torch.matmul(self.x_all, W1).add_(b1).clamp_min_(0.0), W2)  # (copies, n_all, K)
        zmax = logits.amax(-1, keepdim=True)
        shifted = logits - zmax
        logp_y = torch.gather(shifted, 2, y.unsqueeze(2)).squeeze(2) - shifted.exp().sum(-1).log()
        correct = (logits.argmax(-1) == y).to(torch.float32)
        out = []
        n, nv = self.train_size, self.val_size
        for sl in (slice(0, n), slice(n, n + nv), slice(n + nv, None)):
            out += [-logp_y[:, sl].mean(1), correct[:, sl].mean(1)]
        m = torch.stack(out, 1).double().cpu().numpy()
        diverged = ~np.isfinite(m).all(1)
        if diverged.any():
            m[diverged] = [LOSS_CAP, 0.0, LOSS_CAP, 0.0, LOSS_CAP, 0.0]
        m[:, 0::2] = np.clip(m[:, 0::2], 0.0, LOSS_CAP)
        return m, diverged

    def _update_fit(self, idx: np.ndarray) -> None:
        newly = (self.fit_step[idx] < 0) & (self.metrics[idx, 1] >= self.fit_threshold)
        self.fit_step[idx[newly]] = self.sgd_steps[idx[newly]]

    # ------------------------------------------------------- observation/info
    def _observe(self, idx: np.ndarray) -> np.ndarray:
        m = self.metrics[idx]
        with np.errstate(divide="ignore"):
            lg = np.log10(np.maximum(self.grad_norm[idx], 1e-12))
        lg = np.clip(np.nan_to_num(lg, nan=GRAD_LOG_RANGE[1], posinf=GRAD_LOG_RANGE[1]), *GRAD_LOG_RANGE)
        obs = np.concatenate(
            [m[:, :4], lg[:, None], (self.t[idx] / self.horizon)[:, None], self.best_val[idx, None], self.last_action[idx]], 1
        ).astype(np.float32)
        sp = self.single_observation_space
        return np.clip(obs, sp.low, sp.high)

    def _info(self, idx: np.ndarray, diverged: np.ndarray) -> dict[str, np.ndarray]:
        m = self.metrics[idx]
        fitted = self.fit_step[idx] >= 0
        return {
            "train_loss": m[:, 0], "train_accuracy": m[:, 1],
            "val_loss": m[:, 2], "val_accuracy": m[:, 3],
            "test_loss": m[:, 4], "hidden_performance": m[:, 5],
            "generalization_gap": m[:, 1] - m[:, 5],
            "grad_norm": np.nan_to_num(self.grad_norm[idx], nan=np.inf),
            "learning_rate": self.applied[idx, 0], "batch_size": self.applied[idx, 1], "weight_decay": self.applied[idx, 2],
            "sgd_steps": self.sgd_steps[idx].copy(), "samples_seen": self.samples_seen[idx].copy(),
            "best_val_accuracy": self.best_val[idx].copy(), "early_stopping_accuracy": self.best_val_test[idx].copy(),
            "fitted": fitted.astype(np.float64),
            "steps_to_fit": np.where(fitted, self.fit_step[idx], self.sgd_steps[idx]).astype(np.float64),
            "diverged": diverged.astype(np.float64),
        }

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        m = self.metrics[i]
        lr, bs, wd = self.applied[i]
        return (
            f"chunk {self.t[i]}/{self.horizon} ({self.sgd_steps[i]} SGD steps) lr={lr:.3g} batch={int(bs)} wd={wd:.2g}: "
            f"train loss {m[0]:.3f} acc {m[1]:.3f} | val loss {m[2]:.3f} acc {m[3]:.3f} | (hidden: test acc {m[5]:.3f})"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """Training curves of the episode so far: losses, accuracies (the hidden test accuracy dotted) and the learning rate chosen."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(560, 280), grid=(1, 3), margins={"left": 0.07, "wspace": 0.45, "bottom": 0.17})
        lr, bs, wd = self.applied[i]
        ax_loss, ax_acc, ax_lr = sk.begin(f"TrainingControl: chunk {self.t[i]}/{self.horizon} ({self.sgd_steps[i]} SGD steps), "
                                          f"now lr {lr:.3g}, batch {int(bs)}, wd {wd:.2g}")
        h = self.history[i, : self.t[i] + 1]
        x = np.arange(len(h))
        ax_loss.plot(x, h[:, 0], color=PALETTE["blue"], marker=".", label="train")
        ax_loss.plot(x, h[:, 2], color=PALETTE["orange"], marker=".", label="val")
        ax_loss.set_title("loss", fontsize=9)
        ax_acc.plot(x, h[:, 1], color=PALETTE["blue"], marker=".", label="train")
        ax_acc.plot(x, h[:, 3], color=PALETTE["orange"], marker=".", label="val")
        ax_acc.plot(x, h[:, 5], color=PALETTE["grey"], ls=":", label="test (hidden)")
        ax_acc.set_ylim(0, 1.02)
        ax_acc.set_title("accuracy", fontsize=9)
        ax_acc.legend(fontsize=6, loc="lower right")
        ax_loss.legend(fontsize=6, loc="upper right")
        ax_lr.step(x[1:], np.log10(h[1:, 6]), where="post", color=PALETTE["green"])  # log10 on a linear axis: a log axis costs ~100 ms of ticks
        lo, hi = np.log10(self.lr_range)
        ax_lr.set_ylim(lo - 0.1, hi + 0.1)
        ax_lr.set_title("log10 learning rate", fontsize=9)
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.set_xlim(0, self.horizon)
            ax.set_xlabel("chunk", fontsize=8)
            ax.tick_params(labelsize=7)
        return sk.finish()

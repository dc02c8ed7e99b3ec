"""``deploy_envs/TrojanDetection-v0``: audit a classifier for a hidden backdoor trigger."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Option, check_choice, check_device, check_number, check_positive
from deploy_envs.topics.backdoor.mlp import BatchedMLP
from deploy_envs.topics.trojans.population import Population, load_images, load_population

KINDS = ("all", "patch", "blend")
#: seed of the fixed draw of the probe inputs from the test split
PROBE_SEED = 0


def iou(declared: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Intersection over union of binary masks ``(B, H, W)`` (``declared`` > 0.5, ``true`` > 0); 0 when both are empty."""
    declared, true = np.asarray(declared), np.asarray(true)
    if declared.shape != true.shape:
        raise ValueError(f"mask has shape {declared.shape}; expected {true.shape} (one H x W mask per copy)")
    a = declared.reshape(len(declared), -1) > 0.5
    b = true.reshape(len(true), -1) > 0
    inter = (a & b).sum(1)
    union = (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def upsample(low: np.ndarray, H: int, W: int) -> np.ndarray:
    """Nearest-neighbour upsampling of ``(B, r, r)`` masks/patterns to ``(B, H, W)``."""
    B, r = low.shape[0], low.shape[-1]
    fh, fw = H // r, W // r
    return np.broadcast_to(low[:, :, None, :, None], (B, r, fh, r, fw)).reshape(B, H, W)


class TrojanDetectionCore(BatchedCore):
    """## Description

    The agent is an auditor handed one classifier from a population of small digits
    MLPs (:mod:`deploy_envs.topics.trojans.population`; the shipped one: ``256 -> 64 -> 10``
    on the 8x8 digits upsampled to 16x16), some clean and some trojaned:
    trained on data in which a trigger - a small patch (BadNets: Gu, Dolan-Gavitt &
    Garg 2017) or a whole-image blend (Chen et al. 2017) - relabels inputs to a
    target class. The auditor has query access: each step it submits a candidate
    trigger (a mask and a pattern) and sees what the model does on a fixed set of
    ``probe_size`` clean test inputs with the candidate stamped on
    (``x' = (1 - m) x + m p``). When it has seen enough it declares the model clean
    or trojaned, names the target class and outlines the trigger mask, the three
    outputs of a trojan detector such as Neural Cleanse (Wang et al. 2019,
    "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks").
    With ``white_box=True`` the auditor may also read the model's weights
    (``core.model_params(idx)``), which gradient-based detectors need.

    The probes of all copies of a vector env - each copy holding a different model -
    are evaluated in one batched forward pass (stacked weights, one ``bmm`` per layer).

    ## Action Space

    ``Box(-1, 1, (2 r^2 + 2 + K,), float32)`` with ``r = resolution``; each
    coordinate ``a`` read as ``u = (a + 1) / 2`` where it is a value in [0, 1]:

    | part | size | meaning |
    |---|---|---|
    | ``mask`` | r*r | candidate mask ``u`` (upsampled to the image by nearest neighbour); at the declaration, the declared trigger mask is ``u > 0.5`` |
    | ``pattern`` | r*r | candidate pattern ``u`` (upsampled) |
    | ``declare`` | 1 | ``> 0``: declare now (no probe) |
    | ``verdict`` | 1 | ``> 0``: trojaned; the raw value is the auditor's score (``info["score"]``, for ROC curves) |
    | ``target`` | K | argmax: the declared target class |

    :meth:`TrojanDetectionCore.encode` builds an action from full-resolution parts.

    ## Observation Space

    A flat ``Box`` of float32 (``obs_slices`` names the parts):

    | part | size | range | content |
    |---|---|---|---|
    | ``clean_scores`` | K | [0, 1] | the model's mean softmax over the clean probe inputs |
    | ``probe_scores`` | K | [0, 1] | mean softmax over the probe inputs with the last candidate stamped on (the clean scores at reset) |
    | ``flip_rate`` | K | [0, 1] | for each class k, the fraction of probe inputs not predicted k before stamping that are predicted k after (0 at reset) |
    | ``mask_size`` | 1 | [0, 1] | L1 norm of the last candidate mask over ``H*W`` |
    | ``budget`` | 1 | [0, 1] | fraction of the query budget left |

    The model's weights and its true label are never in the observation.

    ## Rewards

    ``-query_cost`` per probe. At the declaration: ``verdict_reward`` if the verdict is
    right, plus - for a trojaned model declared trojaned - ``target_reward`` if the
    target class is right and ``iou_reward * IoU(declared mask, true mask)``.
    A blend trigger's true mask is the whole image.

    ## Starting State

    A model drawn (from the copy's rng) among the population's ``models`` (default
    all, filtered by ``kinds``): trojaned with probability ``trojan_fraction``
    (uniform over the candidates when ``None``), then uniformly within the drawn
    label; ``options={"model": i}`` chooses it.

    ## Episode End

    Terminates at the declaration: a step with ``declare > 0``, or the
    ``max_queries``-th probe, whose action's ``verdict``, ``target`` and ``mask`` are then
    the declaration. The budget is in the observation, so this is a termination.

    ## Info

    Every step: ``queries``, ``success`` (the verdict is right; False before the end),
    ``mask_size``, ``verdict`` (-1 until declared, then 0/1), ``declared_target`` (-1
    until declared), ``trojaned`` and ``true_target`` (the truth: -1 sentinels until the
    episode ends; ``true_target`` stays -1 for a clean model). At the end also ``score``,
    ``correct``, ``model_index``, and for a trojaned model ``iou`` and ``target_correct``.

    ## Arguments

    * ``population``: directory of a population (default: the shipped one), or a loaded :class:`Population`.
    * ``models``: sequence of model indices to draw from (default all).
    * ``kinds``: ``"all"`` (default), ``"patch"`` or ``"blend"``: which trojaned models to draw (clean ones always).
    * ``trojan_fraction``: probability of a trojaned model, in [0, 1], or ``None`` (default 0.5).
    * ``probe_size``: number of clean probe inputs (default 32); ``probe_seed``: integer >= 0, seed of their draw from the test split (default 0): results that depend on the probe set are reported across several draws; ``resolution``: side of the action's mask/pattern grid, a divisor of the image side (default ``None``: the image side, 16 for the shipped population).
    * ``max_queries``: probes per episode (default 10); ``query_cost`` >= 0 (default 0.01).
    * ``verdict_reward``, ``target_reward``, ``iou_reward`` >= 0 (default 1 each).
    * ``white_box``: allow ``core.model_params`` (default False).
    * ``device`` (default ``"cpu"``): torch device (``"cuda"``, ``"cuda:1"``, ...) of the population's
      parameters, the probe inputs and every batched forward; only the predictions and mean scores
      of each step come back to the host.

    ## Version History

    * v0: initial release; ``device`` and ``probe_seed`` added within v0 (new arguments, defaults unchanged: ``probe_seed`` defaults to the former fixed draw).
    """

    reset_options = {
        "model": Option(int, "the population model of the new episode", per_copy=True, allowed=lambda core: core.candidates,
                        allowed_text="indices in env.core.candidates"),
    }

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        population: Any = None,
        models: Sequence[int] | None = None,
        kinds: str = "all",
        trojan_fraction: float | None = 0.5,
        probe_size: int = 32,
        probe_seed: int = PROBE_SEED,
        resolution: int | None = None,
        max_queries: int = 10,
        query_cost: float = 0.01,
        verdict_reward: float = 1.0,
        target_reward: float = 1.0,
        iou_reward: float = 1.0,
        white_box: bool = False,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.device = dev = check_device("device", device)
        self.kinds = check_choice("kinds", kinds, KINDS)
        self.trojan_fraction = None if trojan_fraction is None else check_number("trojan_fraction", trojan_fraction, low=0.0, high=1.0)
        self.max_queries = check_positive("max_queries", max_queries, integer=True)
        self.query_cost = check_number("query_cost", query_cost, low=0.0)
        self.verdict_reward = check_number("verdict_reward", verdict_reward, low=0.0)
        self.target_reward = check_number("target_reward", target_reward, low=0.0)
        self.iou_reward = check_number("iou_reward", iou_reward, low=0.0)
        self.white_box = bool(check_choice("white_box", white_box, (True, False)))
        self.pop: Population = population if isinstance(population, Population) else load_population(population)
        H, W = self.pop.masks.shape[1:]
        _, _, x_test, y_test = load_images(H)  # the population's images: digits upsampled to H x W
        self.H, self.W, self.d, self.K = H, W, H * W, int(self.pop.params[-1].shape[-1])
        self.probe_size = check_number("probe_size", probe_size, low=1, high=len(y_test), integer=True)
        self.probe_seed = check_number("probe_seed", probe_seed, low=0, integer=True)
        self.resolution = H if resolution is None else check_number("resolution", resolution, low=1, high=min(H, W), integer=True)
        if H % self.resolution or W % self.resolution:
            raise ValueError(f"resolution={resolution!r} must divide the image side {H}; allowed: "
                             f"{[r for r in range(1, H + 1) if H % r == 0]}")
        pick = np.random.default_rng(self.probe_seed).choice(len(y_test), self.probe_size, replace=False)
        self.probe_x = torch.as_tensor(x_test[pick].reshape(self.probe_size, self.d).astype(np.float32), device=dev)
        self.params = [p.to(dev) for p in self.pop.params]  # the population's stacked weights, on the device

        all_models = np.arange(len(self.pop))
        if models is None:
            cand = all_models
        else:
            cand = np.asarray(list(models), dtype=np.int64) if not isinstance(models, (str, bytes)) else np.array([-1])
            if cand.ndim != 1 or len(cand) == 0 or (cand < 0).any() or (cand >= len(self.pop)).any():
                raise ValueError(f"models={models!r} must be a non-empty sequence of model indices in [0, {len(self.pop) - 1}]")
        keep = ~self.pop.trojaned[cand] | (self.kinds == "all") | (self.pop.kinds[cand] == self.kinds)
        cand = cand[keep]
        self.clean_models = cand[~self.pop.trojaned[cand]]
        self.trojan_models = cand[self.pop.trojaned[cand]]
        self.candidates = cand
        if self.trojan_fraction is not None:
            if self.trojan_fraction > 0 and not len(self.trojan_models):
                raise ValueError(f"trojan_fraction={trojan_fraction!r} > 0 but models/kinds leave no trojaned model to draw")
            if self.trojan_fraction < 1 and not len(self.clean_models):
                raise ValueError(f"trojan_fraction={trojan_fraction!r} < 1 but models/kinds leave no clean model to draw")
        elif not len(cand):
            raise ValueError(f"models={models!r} with kinds={kinds!r} leaves no model to draw")
        # every candidate's answer to the clean probes, computed once: the probes and the models are fixed,
        # so a reset reads its copy's row instead of running the model again
        self.clean_probe_pred = np.zeros((len(self.pop), self.probe_size), np.int64)
        self.clean_probe_scores = np.zeros((len(self.pop), self.K), np.float32)
        self.clean_probe_pred[cand], self.clean_probe_scores[cand] = self._query(cand, self.probe_x)

        K, r = self.K, self.resolution
        self.single_observation_space, self.obs_slices = flat_box([
            ("clean_scores", K, 0.0, 1.0), ("probe_scores", K, 0.0, 1.0), ("flip_rate", K, 0.0, 1.0),
            ("mask_size", 1, 0.0, 1.0), ("budget", 1, 0.0, 1.0),
        ])
        self.single_action_space, self.action_slices = flat_box(
            [(name, size, -1.0, 1.0) for name, size in (("mask", r * r), ("pattern", r * r), ("declare", 1), ("verdict", 1), ("target", K))]
        )

        n = self.num_envs
        self.model = np.zeros(n, np.int64)
        self.queries = np.zeros(n, np.int64)
        self.probe_scores = np.zeros((n, K), np.float32)
        self.flip = np.zeros((n, K), np.float32)
        self.mask_size = np.zeros(n, np.float32)
        self.last_mask = np.zeros((n, self.H, self.W), np.float32)  # the last probed trigger (for the picture)
        self.last_pattern = np.zeros((n, self.H, self.W), np.float32)
        # each copy's last declaration (verdict, declared target, correct, trojaned, true target, IoU; NaN: none
        # this episode), kept as numbers and put into words only when rendered
        self.last_decl = np.full((n, 6), np.nan)

    # ---------------------------------------------------------- helpers
    def encode(self, mask: np.ndarray, pattern: np.ndarray, declare: bool | np.ndarray = False,
               verdict: float | np.ndarray = 0.0, target: int | np.ndarray = 0) -> np.ndarray:
        """Actions ``(B, n)`` from masks and patterns ``(B, r, r)`` in [0, 1], declare flags, verdict scores in [-1, 1] and targets."""
        r = self.resolution
        mask, pattern = np.asarray(mask, np.float32), np.asarray(pattern, np.float32)
        if mask.ndim != 3 or mask.shape[1:] != (r, r):
            raise ValueError(f"mask has shape {mask.shape}; expected (B, {r}, {r}) for resolution={r}")
        if pattern.shape != mask.shape:
            raise ValueError(f"pattern has shape {pattern.shape}; expected {mask.shape}, the shape of mask")
        B = len(mask)
        a = np.zeros((B, self.single_action_space.shape[0]), np.float32)
        s = self.action_slices
        a[:, s["mask"]] = np.clip(mask.reshape(B, -1), 0, 1) * 2 - 1
        a[:, s["pattern"]] = np.clip(pattern.reshape(B, -1), 0, 1) * 2 - 1
        a[:, s["declare"]] = np.where(np.broadcast_to(declare, (B,)), 1.0, -1.0)[:, None]
        a[:, s["verdict"]] = np.clip(np.broadcast_to(np.asarray(verdict, np.float32), (B,)), -1, 1)[:, None]
        t = np.broadcast_to(np.asarray(target, np.int64), (B,))
        if (t < 0).any() or (t >= self.K).any():
            raise ValueError(f"target={target!r} must be class indices in [0, {self.K - 1}]")
        tgt = np.full((B, self.K), -1.0, np.float32)
        tgt[np.arange(B), t] = 1.0
        a[:, s["target"]] = tgt
        return a

    def model_params(self, idx: np.ndarray) -> list[torch.Tensor]:
        """White-box access: the stacked parameters of the models of copies ``idx`` (needs ``white_box=True``)."""
        if not self.white_box:
            raise ValueError("white_box=False: this auditor has query access only; make the env with white_box=True for weights")
        m = torch.as_tensor(self.model[np.asarray(idx, np.int64)], device=self.device)
        return [p.index_select(0, m) for p in self.params]

    def stamp(self, mask: np.ndarray, pattern: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """Probe inputs with per-copy full-size masks/patterns ``(B, H, W)`` stamped on: ``(B, M, d)``.

        ``x + m (p - x)``, the blend ``(1 - m) x + m p`` with one temporary (into ``out`` if given).
        """
        m = torch.as_tensor(np.asarray(mask, np.float32).reshape(len(mask), 1, self.d), device=self.device)
        p = torch.as_tensor(np.asarray(pattern, np.float32).reshape(len(pattern), 1, self.d), device=self.device)
        if out is None:
            out = torch.empty(len(mask), *self.probe_x.shape, device=self.device)
        return torch.sub(p, self.probe_x, out=out).mul_(m).add_(self.probe_x)

    # ------------------------------------------------------------ reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, np.int64)
        self._draw_models(idx, options)
        return self._restart(idx)

    def _draw_models(self, idx: np.ndarray, options: dict | None) -> None:
        """Choose the models of the new episodes of copies ``idx`` (``options['model']`` or per-copy draws)."""
        options = options or {}
        chosen = options.get("model")
        if chosen is not None:
            chosen = np.broadcast_to(np.asarray(chosen, np.int64), (len(idx),))
            if not np.isin(chosen, self.candidates).all():
                raise ValueError(f"options['model']={options['model']!r} is not among this env's models (env.core.candidates)")
            self.model[idx] = chosen
        else:
            for j, i in enumerate(idx):  # cheap per-copy draws, each from its own rng
                rng = self.rngs[i]
                if self.trojan_fraction is None:
                    self.model[i] = self.candidates[rng.integers(len(self.candidates))]
                else:
                    pool = self.trojan_models if rng.random() < self.trojan_fraction else self.clean_models
                    self.model[i] = pool[rng.integers(len(pool))]

    def _restart(self, idx: np.ndarray):
        """Start the episodes of copies ``idx`` (their models already drawn); reset's return."""
        self.probe_scores[idx] = self.clean_probe_scores[self.model[idx]]
        self.flip[idx] = 0.0
        self.mask_size[idx] = 0.0
        self.last_mask[idx] = 0.0
        self.last_pattern[idx] = 0.0
        self.queries[idx] = 0
        self.last_decl[idx] = np.nan
        k = len(idx)
        info = {
            "queries": self.queries[idx].copy(), "success": np.zeros(k, bool), "mask_size": np.zeros(k, np.float32),
            "verdict": np.full(k, -1, np.int64), "declared_target": np.full(k, -1, np.int64),
            "trojaned": np.full(k, -1, np.int64), "true_target": np.full(k, -1, np.int64),
        }
        return self._observe(idx), info

    # ------------------------------------------------------------- step
    def decode(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Actions ``(B, n)`` -> full-size ``mask``/``pattern`` ``(B, H, W)``, ``declare``, ``score``, ``target``."""
        a = np.asarray(actions, np.float32)
        s, r, B = self.action_slices, self.resolution, len(a)
        u = (a + np.float32(1.0)) * np.float32(0.5)
        return {
            "mask": upsample(u[:, s["mask"]].reshape(B, r, r), self.H, self.W),
            "pattern": upsample(u[:, s["pattern"]].reshape(B, r, r), self.H, self.W),
            "declare": a[:, s["declare"]][:, 0] > 0,
            "score": a[:, s["verdict"]][:, 0].astype(np.float64),
            "target": a[:, s["target"]].argmax(1),
        }

    def step_indices(self, idx, actions):
        idx = np.asarray(idx, np.int64)
        dec = self.decode(actions)
        rows = np.flatnonzero(~dec["declare"])
        # every probing copy's own model, one batched forward
        pred, scores = self._query(self.model[idx[rows]], self.stamp(dec["mask"][rows], dec["pattern"][rows]))
        return self._advance(idx, dec, rows, pred, scores)

    def _query(self, models: np.ndarray, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Predictions ``(B, M)`` and mean softmax over the probes ``(B, K)`` of ``models`` on ``x`` (one batched forward)."""
        if len(models) == 0:
            return np.zeros((0, x.shape[-2]), np.int64), np.zeros((0, self.K), np.float32)
        with torch.no_grad():
            m = torch.as_tensor(np.asarray(models, np.int64), device=self.device)
            # index_select: a plain row copy, several times faster than advanced indexing on CPU
            logits = BatchedMLP.forward([p.index_select(0, m) for p in self.params], x)[1]
            # softmax over the classes with them off the last axis: torch's CPU softmax over a short last axis is slow
            mean_softmax = torch.softmax(logits.transpose(1, 2), 1).mean(2)
            return logits.argmax(-1).cpu().numpy(), mean_softmax.cpu().numpy()

    def _advance(self, idx: np.ndarray, dec: dict[str, np.ndarray], rows: np.ndarray, pred: np.ndarray, scores: np.ndarray):
        """The step of copies ``idx`` after the probes of rows ``rows`` gave predictions ``pred`` and mean softmax ``scores``; step's return."""
        k = len(idx)
        reward = np.zeros(k, np.float64)
        if len(rows):
            pi = idx[rows]
            self.probe_scores[pi] = scores
            # flip rate to class c: of the probes whose clean class is not c, the share now classified c;
            # counted per (row, class) with bincount rather than through (rows, probes, K) one-hots
            R, K, M = len(rows), self.K, pred.shape[1]
            clean = self.clean_probe_pred[self.model[pi]]
            row_start = (np.arange(R) * K)[:, None]
            cell = pred + row_start
            now_c = np.bincount(cell.ravel(), minlength=R * K)
            kept_c = np.bincount(cell[pred == clean], minlength=R * K)  # already c before the trigger
            clean_c = np.bincount((clean + row_start).ravel(), minlength=R * K)
            self.flip[pi] = ((now_c - kept_c) / np.maximum(M - clean_c, 1)).reshape(R, K).astype(np.float32)
            mask = dec["mask"][rows]
            self.mask_size[pi] = mask.reshape(R, -1).mean(1)
            self.last_mask[pi] = mask
            self.last_pattern[pi] = dec["pattern"][rows]
            self.queries[pi] += 1
            reward[rows] -= self.query_cost
        end = dec["declare"] | (self.queries[idx] >= self.max_queries)
        verdict = np.where(end, (dec["score"] > 0).astype(np.int64), -1)
        declared_target = np.where(end, dec["target"], -1)
        truth = self.pop.trojaned[self.model[idx]]
        true_target = self.pop.targets[self.model[idx]]
        correct = end & (verdict == truth.astype(np.int64))
        on_trojan = end & truth
        found = on_trojan & (verdict == 1)
        target_ok = found & (declared_target == true_target)
        overlap = np.zeros(k, np.float64)
        if found.any():  # IoU only where a trojan was found
            overlap[found] = iou(dec["mask"][found], self.pop.masks[self.model[idx[found]]])
        reward += self.verdict_reward * correct + self.target_reward * target_ok + self.iou_reward * overlap
        info = {
            "queries": self.queries[idx].copy(), "success": correct, "mask_size": self.mask_size[idx].copy(),
            "verdict": verdict, "declared_target": declared_target,
            "trojaned": np.where(end, truth.astype(np.int64), -1), "true_target": np.where(end, true_target, -1),
            "score": dec["score"], "_score": end.copy(), "correct": correct, "_correct": end.copy(),
            "model_index": self.model[idx].copy(), "_model_index": end.copy(),
            "iou": overlap, "_iou": on_trojan.copy(), "target_correct": target_ok, "_target_correct": on_trojan.copy(),
        }
        e = np.flatnonzero(end)
        if len(e):
            self.last_decl[idx[e]] = np.stack([verdict[e], declared_target[e], correct[e], truth[e], true_target[e], overlap[e]], 1)
        return self._observe(idx), reward, end, np.zeros(k, bool), info

    def _observe(self, idx):
        s = self.obs_slices
        obs = np.empty((len(idx), self.single_observation_space.shape[0]), np.float32)
        obs[:, s["clean_scores"]] = self.clean_probe_scores[self.model[idx]]
        obs[:, s["probe_scores"]] = self.probe_scores[idx]
        obs[:, s["flip_rate"]] = self.flip[idx]
        obs[:, s["mask_size"]] = self.mask_size[idx, None]
        obs[:, s["budget"]] = (1.0 - self.queries[idx] / self.max_queries)[:, None]
        np.clip(obs, 0.0, 1.0, out=obs)
        return obs

    def render_ansi(self, i: int) -> str:
        top = int(self.flip[i].argmax())
        line = (f"queries {self.queries[i]}/{self.max_queries}  last probe: mask size {self.mask_size[i]:.2f}, "
                f"max flip rate {self.flip[i, top]:.2f} to class {top}")
        decl = self._declaration_text(i)
        return line + ("  " + decl if decl else "")

    def _declaration_text(self, i: int) -> str:
        """Copy ``i``'s last declaration in words ("" when it has not declared this episode)."""
        verdict, target, correct, truth, true_target, overlap = self.last_decl[i]
        if np.isnan(verdict):
            return ""
        return (f"declared {'TROJANED' if verdict else 'clean'} target {int(target)}: {'right' if correct else 'wrong'} "
                f"(truth {'trojaned -> ' + str(int(true_target)) if truth else 'clean'}), IoU {overlap:.2f}")

    def render_rgb(self, i: int) -> np.ndarray:
        """The last probed trigger (mask, pattern, stamped on a probe input) and what it did: flip rate per class."""
        from deploy_envs.core.rendering import no_ticks, sketch

        sk = sketch(self, size=(560, 220), grid=(1, 4), width_ratios=(1, 1, 1, 1.8), margins={"left": 0.02, "right": 0.98, "bottom": 0.15, "top": 0.76, "wspace": 0.25})
        decl = self._declaration_text(i)
        title = f"TrojanDetection: model {self.model[i]}, probe {self.queries[i]}/{self.max_queries}"
        ax_m, ax_p, ax_x, ax_f = sk.begin(title + (f"\n{decl}" if decl else ""), fontsize=8)
        ax_p.imshow(self.last_pattern[i], cmap="gray", vmin=0, vmax=1)
        ax_p.set_title("pattern", fontsize=8)
        draw_probe(ax_m, ax_x, ax_f, self.last_mask[i], self.last_pattern[i], self.probe_x[0].numpy().reshape(self.H, self.W),
                   self.flip[i], f"mask ({self.mask_size[i]:.0%})", fontsize=8)
        no_ticks(ax_m, ax_p, ax_x)
        return sk.finish()


def draw_probe(ax_mask, ax_stamped, ax_flip, mask: np.ndarray, pattern: np.ndarray, x: np.ndarray, flip: np.ndarray,
               mask_title: str, fontsize: int) -> None:
    """A probed trigger: its mask, the probe input ``x`` with the trigger stamped on, and the flip rate to each class it caused."""
    from deploy_envs.core.rendering import PALETTE

    ax_mask.imshow(mask, cmap="gray", vmin=0, vmax=1)
    ax_mask.set_title(mask_title, fontsize=fontsize)
    ax_stamped.imshow((1 - mask) * x + mask * pattern, cmap="gray", vmin=0, vmax=1)
    ax_stamped.set_title("stamped probe", fontsize=fontsize)
    K = np.arange(len(flip))
    top = int(flip.argmax())
    ax_flip.bar(K, flip, color=[PALETTE["red"] if k == top and flip[k] > 0 else PALETTE["blue"] for k in K])
    ax_flip.set_ylim(0, 1)
    ax_flip.set_xticks(K)
    ax_flip.set_title("flip rate to each class", fontsize=8)
    ax_flip.tick_params(labelsize=7)

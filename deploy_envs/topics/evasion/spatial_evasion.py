"""``deploy_envs/SpatialEvasion-v0``: evade a classifier with a rotation and a translation."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.validation import Option, check_choice, check_number, check_positive, reward_weight_arguments
from deploy_envs.core.spaces import flat_box
from deploy_envs.topics.evasion.rendering import render_attack
from deploy_envs.topics.evasion.victim import Victim, margins

logger = logging.getLogger(__name__)

THREAT_MODELS = ("scores", "decision")
ACTION_TYPES = ("continuous", "grid")

#: Engstrom et al. (2019): +-30 degrees, +-3 pixels on 28x28 images, a grid of
#: 31 angles x 5 x 5 shifts = 775 transforms.
DEFAULT_MAX_ANGLE = 30.0
DEFAULT_SHIFT_PER_28 = 3.0
DEFAULT_N_ANGLES = 31
DEFAULT_N_SHIFTS = 5


def default_max_shift(image_size: int) -> float:
    """Engstrom et al.'s +-3 pixels on 28x28 scaled to ``image_size`` (0.857 px on 8x8 digits)."""
    return DEFAULT_SHIFT_PER_28 * image_size / 28.0


def affine_thetas(transforms: np.ndarray, height: int, width: int) -> np.ndarray:
    """``affine_grid`` matrices ``(k, 2, 3)`` for transforms ``(k, 3)`` of ``(angle, dx, dy)``.

    ``angle`` is in degrees, counterclockwise as the image is displayed (rows grow
    downwards); ``dx`` moves the content right and ``dy`` moves it down, in pixels.
    The output pixel at ``p`` (pixel coordinates about the image centre) samples the
    input at ``M^-1 (p - t)`` with ``M`` the rotation and ``t = (dx, dy)``;
    ``affine_grid`` wants that map in normalized coordinates ``S p`` with
    ``S = diag(2/W, 2/H)`` (``align_corners=False``).
    """
    tr = np.asarray(transforms, dtype=np.float64).reshape(-1, 3)
    rad = np.deg2rad(tr[:, 0])
    c, s = np.cos(rad), np.sin(rad)
    sx, sy = 2.0 / width, 2.0 / height
    # M = [[c, s], [-s, c]] in (x right, y down) coordinates; M^-1 = [[c, -s], [s, c]]
    a = np.empty((len(tr), 2, 3), dtype=np.float64)
    a[:, 0, 0] = c
    a[:, 0, 1] = -s * sx / sy
    a[:, 1, 0] = s * sy / sx
    a[:, 1, 1] = c
    dx, dy = tr[:, 1], tr[:, 2]
    a[:, 0, 2] = -sx * (c * dx - s * dy)
    a[:, 1, 2] = -sy * (s * dx + c * dy)
    return a.astype(np.float32)


def transform_images(images: torch.Tensor, transforms: np.ndarray) -> torch.Tensor:
    """Rotate and translate a batch ``(k, C, H, W)`` (bilinear, zero padding), clipped to [0, 1]."""
    k, _, h, w = images.shape
    theta = torch.from_numpy(affine_thetas(transforms, h, w)).to(images.device)
    grid = F.affine_grid(theta, [k, *images.shape[1:]], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


class SpatialEvasionCore(BatchedCore):
    """## Description

    The agent is an attacker that rotates and translates one input per episode so
    that a fixed victim classifier misclassifies it: the spatial threat model of
    Engstrom et al. (2019), "Exploring the Landscape of Spatial Robustness", with
    rotations within ``max_angle`` degrees (default 30) and translations within
    ``max_shift`` pixels (default +-3 pixels on 28x28 images, scaled to the image
    size: ``3 * size / 28``, i.e. 0.857 pixels on the 8x8 digits). Each episode
    draws a test input the victim classifies correctly; each step applies one
    transform to the *clean* input (transforms are absolute, not incremental) and
    is one query of the victim on the result. The transform is one batched
    ``torch.nn.functional.affine_grid`` + ``grid_sample`` (bilinear, zero padding).

    ## Action Space

    With ``action_type="continuous"`` (default): ``Box(-1, 1, (3,), float32)``,
    scaled to ``(angle, dx, dy) = (max_angle * a[0], max_shift * a[1], max_shift * a[2])``.
    With ``action_type="grid"``: ``Discrete(n_angles * n_shifts**2)`` over Engstrom
    et al.'s grid (default 31 x 5 x 5 = 775), ``angles = linspace(-max_angle,
    max_angle, n_angles)`` and ``shifts = linspace(-max_shift, max_shift, n_shifts)``;
    index ``i`` is angle ``i // n_shifts**2``, dx ``(i // n_shifts) % n_shifts``,
    dy ``i % n_shifts`` (:meth:`grid_transform` maps an index to ``(angle, dx, dy)``,
    :meth:`grid_action` to the equivalent action in either mode).
    Angles are counterclockwise as the image is displayed; ``dx`` moves the content
    right, ``dy`` down.

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``x`` | d | [0, 1] | current transformed input |
    | ``feedback`` | K | [0, 1] | ``scores``: softmax output; ``decision``: one-hot top label |
    | ``label`` | K | [0, 1] | one-hot true label (untargeted) or target label (targeted) |
    | ``transform`` | 3 | [-1, 1] | current ``(angle / max_angle, dx / max_shift, dy / max_shift)`` (0 where ``max_shift = 0``) |
    | ``budget`` | 1 | [0, 1] | fraction of the query budget left |

    Only black-box threat models exist here (``scores`` and ``decision``): the
    observation and ``info`` never carry gradients or weights.

    ## Rewards

    ``reward_scale * (margin_before - margin_after)`` (dense progress on the
    logit margin of the true class, or towards the target) plus ``success_bonus``
    on success, minus ``query_cost`` per step. Under ``decision`` the dense term is
    off by default (``dense_reward=None``) since it would leak the scores.

    ## Starting State

    A test input drawn uniformly from those the victim classifies correctly (or
    ``options={"index": i}`` to choose it), the identity transform, and in targeted
    mode a target drawn uniformly from the other classes (or ``target_class``).
    The starting observation contains the victim's answer on the clean input
    (not counted as a query).

    ## Episode End

    Terminates when the attack succeeds (untargeted: the prediction differs from the
    true label; targeted: it equals the target) or when the query budget
    ``max_queries`` is spent (the budget is part of the observation, so this is a
    termination, not a truncation).

    ## Info

    ``success``, ``queries``, ``true_label``, ``predicted_label``, ``sample_index``,
    ``angle`` (degrees), ``dx``, ``dy`` (pixels) of the current transform;
    ``target_label`` when targeted; ``margin`` except under the ``decision`` threat model.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded), ``"mnist"``, ``"fashion_mnist"``.
    * ``victim``: zoo model (``"standard"``, ``"madry"`` or a full zoo name) or an ``nn.Module``.
    * ``threat_model``: ``"scores"`` (default) or ``"decision"``.
    * ``targeted`` (bool), ``target_class`` (int or None).
    * ``max_queries``: query budget per episode (default 100; the whole default grid is 775).
    * ``action_type``: ``"continuous"`` (default) or ``"grid"``.
    * ``max_angle``: largest rotation in degrees, in (0, 180] (default 30).
    * ``max_shift``: largest translation in pixels, >= 0 and at most the image size
      (default ``None``: ``3 * image_width / 28``).
    * ``n_angles``, ``n_shifts``: grid resolution (>= 1; default 31 and 5; odd counts
      put the identity on the grid).
    * ``reward_scale``, ``success_bonus`` (default 5), ``query_cost`` (default 0), ``dense_reward``
      (``True`` under ``decision`` also needs ``allow_score_leak=True``: the margin leaks the scores).
    * ``split``: ``"test"`` (default) or ``"train"`` inputs; ``device``: torch device.

    ## Version History

    * v0: initial release.
    """

    #: reward weights stay within a range where rewards are finite floats
    arguments = reward_weight_arguments("reward_scale", "success_bonus", costs=("query_cost",))

    reset_options = {
        "index": Option(int, "the test input of the new episode", per_copy=True, allowed=lambda core: core.pool,
                        allowed_text="indices in env.core.pool (inputs the victim classifies correctly)"),
    }

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        victim: Any = "standard",
        threat_model: str = "scores",
        targeted: bool = False,
        target_class: int | None = None,
        max_queries: int = 100,
        action_type: str = "continuous",
        max_angle: float = DEFAULT_MAX_ANGLE,
        max_shift: float | None = None,
        n_angles: int = DEFAULT_N_ANGLES,
        n_shifts: int = DEFAULT_N_SHIFTS,
        reward_scale: float = 1.0,
        success_bonus: float = 5.0,
        query_cost: float = 0.0,
        dense_reward: bool | None = None,
        allow_score_leak: bool = False,
        split: str = "test",
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        if threat_model == "white_box":
            raise ValueError(
                "threat_model='white_box' is not meaningful for SpatialEvasion-v0: the attacker searches "
                "a 3-parameter transform by querying the victim; choose one of 'scores', 'decision' "
                "(use Evasion-v0 for white-box attacks)"
            )
        self.threat_model = check_choice("threat_model", threat_model, THREAT_MODELS)
        self.targeted = bool(check_choice("targeted", targeted, (True, False)))
        self.max_queries = check_positive("max_queries", max_queries, integer=True)
        self.action_type = check_choice("action_type", action_type, ACTION_TYPES)
        self.max_angle = check_number("max_angle", max_angle, low=0.0, low_inclusive=False, high=180.0)
        self.n_angles = check_positive("n_angles", n_angles, integer=True)
        self.n_shifts = check_positive("n_shifts", n_shifts, integer=True)
        self.reward_scale = check_number("reward_scale", reward_scale)
        self.success_bonus = check_number("success_bonus", success_bonus)
        self.query_cost = check_number("query_cost", query_cost, low=0.0)
        if dense_reward is not None:
            check_choice("dense_reward", dense_reward, (True, False, None))
        self.dense_reward = (threat_model != "decision") if dense_reward is None else bool(dense_reward)
        if self.threat_model == "decision" and self.dense_reward and not allow_score_leak:
            raise ValueError(
                "dense_reward=True under threat_model='decision' puts the victim's margin into the reward, "
                "which leaks the scores a decision-only attacker must not see; pass allow_score_leak=True "
                "to do it anyway (e.g. for an upper-bound baseline)"
            )
        self.victim = Victim.build(victim, dataset=dataset, device=device, split=split)
        C, H, W = self.victim.image_shape
        if max_shift is None:
            self.max_shift = default_max_shift(W)
        else:
            self.max_shift = check_number("max_shift", max_shift, low=0.0, high=float(max(H, W)))
        for name, count in (("n_angles", self.n_angles), ("n_shifts", self.n_shifts)):
            if count % 2 == 0:
                logger.warning("%s=%d is even: the grid does not contain the zero %s", name, count, name[2:-1])
        K = self.K = self.victim.num_classes
        self.target_class = None
        if target_class is not None:
            if not targeted:
                raise ValueError(f"target_class={target_class!r} needs targeted=True")
            self.target_class = check_number("target_class", target_class, low=0, high=K - 1, integer=True)
        self.pool = self.victim.correct_indices()
        if self.target_class is not None:
            self.pool = self.pool[self.victim.labels[self.pool] != self.target_class]
        if len(self.pool) == 0:
            raise ValueError(f"victim {self.victim.name!r} classifies no {split} input correctly; nothing to attack")

        # the grid of Engstrom et al.: angle-major, then dx, then dy
        self.grid_angles = np.linspace(-self.max_angle, self.max_angle, self.n_angles) if self.n_angles > 1 else np.zeros(1)
        self.grid_shifts = np.linspace(-self.max_shift, self.max_shift, self.n_shifts) if self.n_shifts > 1 else np.zeros(1)
        a, u, v = np.meshgrid(self.grid_angles, self.grid_shifts, self.grid_shifts, indexing="ij")
        self.grid = np.stack([a.ravel(), u.ravel(), v.ravel()], axis=1)
        self.grid_size = len(self.grid)
        self._scale = np.array([self.max_angle, self.max_shift, self.max_shift], dtype=np.float64)

        self.image_shape = (C, H, W)
        d = self.d = C * H * W
        parts = [("x", d, 0.0, 1.0), ("feedback", K, 0.0, 1.0), ("label", K, 0.0, 1.0), ("transform", 3, -1.0, 1.0), ("budget", 1, 0.0, 1.0)]
        self.single_observation_space, self.obs_slices = flat_box(parts)
        self.obs_dim = self.single_observation_space.shape[0]
        if self.action_type == "continuous":
            self.single_action_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        else:
            self.single_action_space = spaces.Discrete(self.grid_size)

        n = self.num_envs
        self.x0 = np.zeros((n, d), np.float32)
        self.x_adv = np.zeros((n, d), np.float32)
        self.transform = np.zeros((n, 3), np.float64)
        self.true_label = np.zeros(n, np.int64)
        self.target = np.full(n, -1, np.int64)
        self.sample_index = np.zeros(n, np.int64)
        self.queries = np.zeros(n, np.int64)
        self.margin = np.zeros(n, np.float32)
        self.pred = np.zeros(n, np.int64)
        self._eye = np.eye(K, dtype=np.float32)
        self._flat_images = self.victim.images.reshape(len(self.victim.labels), d)

    # ------------------------------------------------------------ transforms
    def grid_transform(self, index):
        """``(angle, dx, dy)`` of grid index ``index`` (a tuple of floats, or a ``(k, 3)`` array for an array of indices)."""
        arr = np.asarray(index)
        if not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any() or (arr >= self.grid_size).any():
            raise ValueError(f"index={index!r} must be integers in [0, {self.grid_size - 1}]")
        if arr.ndim == 0:
            return tuple(float(t) for t in self.grid[int(arr)])
        return self.grid[arr].copy()

    def grid_action(self, index):
        """The action of this env's action space that applies grid transform ``index`` (scalar or array)."""
        arr = np.asarray(index)
        self.grid_transform(arr)  # validates
        if self.action_type == "grid":
            return arr.astype(np.int64)
        return self.normalize_transform(self.grid[arr])

    def normalize_transform(self, transforms: np.ndarray) -> np.ndarray:
        """``(angle, dx, dy)`` -> the continuous action in [-1, 1] (float32; 0 where a bound is 0)."""
        tr = np.asarray(transforms, dtype=np.float64)
        out = np.divide(tr, self._scale, out=np.zeros_like(tr), where=self._scale > 0)
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def action_to_transform(self, actions: np.ndarray) -> np.ndarray:
        """Validated actions (one per copy) -> ``(k, 3)`` transforms ``(angle, dx, dy)``."""
        if self.action_type == "grid":
            return self.grid[np.asarray(actions, dtype=np.int64)]
        return np.asarray(actions, dtype=np.float64).reshape(-1, 3) * self._scale

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        options = options or {}
        chosen = options.get("index")
        if chosen is not None:
            chosen = np.broadcast_to(np.asarray(chosen, dtype=np.int64), (len(idx),))
            bad = ~np.isin(chosen, self.pool)
            if bad.any():
                raise ValueError(
                    f"options['index']={chosen[bad][0]} is not an input the victim classifies correctly "
                    f"(allowed: indices in env.core.pool, {len(self.pool)} of them)"
                )
        for j, i in enumerate(idx):
            rng = self.rngs[i]
            k = int(chosen[j]) if chosen is not None else int(self.pool[rng.integers(len(self.pool))])
            self.sample_index[i] = k
            self.true_label[i] = self.victim.labels[k]
            if self.targeted:
                if self.target_class is not None:
                    self.target[i] = self.target_class
                else:
                    t = int(rng.integers(self.K - 1))
                    self.target[i] = t + (t >= self.true_label[i])
        self.x0[idx] = self._flat_images[self.sample_index[idx]]
        self.x_adv[idx] = self.x0[idx]
        self.transform[idx] = 0.0
        self.queries[idx] = 0
        return self._observe(idx)

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        transforms = self.action_to_transform(actions)
        clean = torch.from_numpy(self.x0[idx]).to(self.victim.device).view(len(idx), *self.image_shape)
        x_adv = transform_images(clean, transforms)
        self.x_adv[idx] = x_adv.reshape(len(idx), -1).cpu().numpy()
        self.transform[idx] = transforms
        prev_margin = self.margin[idx]
        self.queries[idx] += 1
        obs, info = self._observe(idx)
        success = info["success"]
        reward = self.success_bonus * success - self.query_cost
        if self.dense_reward:
            reward = reward + self.reward_scale * (prev_margin - self.margin[idx])
        terminated = success | (self.queries[idx] >= self.max_queries)
        return obs, np.asarray(reward, dtype=np.float64), terminated, np.zeros(len(idx), bool), info

    # ------------------------------------------------------------- internals
    def attack_labels(self, idx) -> np.ndarray:
        return self.target[idx] if self.targeted else self.true_label[idx]

    def _observe(self, idx):
        labels = self.attack_labels(idx)
        x_adv = self.x_adv[idx]
        logits = self.victim.logits(x_adv).cpu()
        margin = margins(logits, torch.from_numpy(labels).to(logits.device), self.targeted).cpu().numpy()
        pred = logits.argmax(1).cpu().numpy()
        self.margin[idx] = margin
        self.pred[idx] = pred
        k = len(idx)
        obs = np.empty((k, self.obs_dim), np.float32)
        s = self.obs_slices
        obs[:, s["x"]] = x_adv
        if self.threat_model == "decision":
            obs[:, s["feedback"]] = self._eye[pred]
        else:
            obs[:, s["feedback"]] = torch.softmax(logits, 1).cpu().numpy()
        obs[:, s["label"]] = self._eye[labels]
        obs[:, s["transform"]] = self.normalize_transform(self.transform[idx])
        obs[:, s["budget"]] = (1.0 - self.queries[idx] / self.max_queries)[:, None]
        success = (pred == self.target[idx]) if self.targeted else (pred != self.true_label[idx])
        tr = self.transform[idx]
        info = {
            "success": success,
            "queries": self.queries[idx].copy(),
            "true_label": self.true_label[idx].copy(),
            "predicted_label": pred,
            "sample_index": self.sample_index[idx].copy(),
            "angle": tr[:, 0].copy(),
            "dx": tr[:, 1].copy(),
            "dy": tr[:, 2].copy(),
        }
        if self.targeted:
            info["target_label"] = self.target[idx].copy()
        if self.threat_model != "decision":
            info["margin"] = margin
        return obs, info

    # ------------------------------------------------------------- rendering
    def _transform_text(self, i: int) -> str:
        angle, dx, dy = self.transform[i]
        return f"rotate {angle:+.1f} deg, shift ({dx:+.2f}, {dy:+.2f}) px"

    def render_ansi(self, i: int) -> str:
        text = self._transform_text(i)
        return (
            f"sample {self.sample_index[i]} true={self.true_label[i]} pred={self.pred[i]} "
            f"queries={self.queries[i]}/{self.max_queries} {text} "
            f"(max {self.max_angle:g} deg, {self.max_shift:.3g} px)"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        text = self._transform_text(i)
        return render_attack(
            self,
            self.x0[i].reshape(self.image_shape),
            (self.x_adv[i] - self.x0[i]).reshape(self.image_shape),
            true_label=int(self.true_label[i]),
            adv_label=int(self.pred[i]),
            title=f"SpatialEvasion: {text}, queries {self.queries[i]}/{self.max_queries}",
            scale=1.0,
        )

"""``deploy_envs/Backdoor-v0``: design a backdoor trigger and poison a victim's training set with it."""
from __future__ import annotations

import logging

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Arg, check_choice, check_device, check_number, check_positive
from deploy_envs.data import load_dataset
from deploy_envs.topics.backdoor import triggers
from deploy_envs.topics.backdoor.detectors import DETECTORS, detect
from deploy_envs.topics.backdoor.mlp import BatchedMLP

logger = logging.getLogger(__name__)

TRIGGERS = ("patch", "blend")
POSITIONS = ("free", "bottom_right", "bottom_left", "top_right", "top_left")
_CLEAN_ACC: dict[tuple, float] = {}


class BackdoorCore(BatchedCore):
    """## Description

    The agent is a backdoor attacker with access to part of a victim's training
    data (an untrusted data source, or outsourced training, as in BadNets: Gu,
    Dolan-Gavitt & Garg 2017, "BadNets: Identifying Vulnerabilities in the
    Machine Learning Model Supply Chain"). In one step it designs a trigger - a
    pattern and mask inside a ``patch_size`` square at a position it chooses
    (``trigger="patch"``), or a whole-image blend (``trigger="blend"``, Chen et
    al. 2017) - and how much of its poison budget to use. The env stamps the
    trigger on that many training points drawn at random (by the copy's rng) from
    the classes other than ``target_class``, relabels them to ``target_class``
    (they replace the originals) and trains the victim - a small ReLU MLP on the
    flattened images, ``train_steps`` full-batch Adam steps from a fixed
    initialisation - for all copies of a vector env at once
    (:mod:`deploy_envs.topics.backdoor.mlp`). It then measures the backdoor on the
    held-out test set and screens the training set with a ``detector``
    (spectral signatures, Tran, Li & Madry 2018, or activation clustering, Chen
    et al. 2018; :mod:`deploy_envs.topics.backdoor.detectors`).

    ## Action Space

    ``Box(-1, 1, (n,), float32)``, each coordinate ``a`` read as ``u = (a + 1) / 2`` in ``[0, 1]``:

    * ``trigger="patch"``: ``p*p`` pattern values ``u``, ``p*p`` mask values
      ``u`` (1 replaces the pixel, fractions blend), then - only with
      ``position="free"`` - a row and a column (``min(floor(u * (H - p + 1)), H - p)``,
      the patch's top-left corner), then the poison fraction.
    * ``trigger="blend"``: ``H*W`` pattern values, the opacity ``u * max_blend_alpha``,
      then the poison fraction.

    The poison fraction ``u`` poisons ``round(u * budget_points)`` training points
    (at most the number of points outside the target class).
    :meth:`BackdoorCore.encode` and :meth:`BackdoorCore.decode` convert between
    triggers and actions.

    ## Observation Space

    A flat ``Box`` of float32 (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``class_means`` | K C H W | [0, 1] | per-class mean images of the clean training data |
    | ``target_class`` | K | [0, 1] | one-hot target class of the episode |
    | ``budget`` | 1 | [0, 1] | the poison budget as a fraction of the training set |

    The test set, the victim's weights and the detector's scores are not observed.

    ## Rewards

    One reward per episode: ``attack_success_rate - max(0, clean_accuracy_drop) -
    detection_penalty * flagged_fraction``, where the drop is measured against the
    victim trained the same way on the clean data (computed once per
    configuration).

    ## Starting State

    The target class (``target_class``, or drawn uniformly per episode when it is
    ``None``) and a random order of the training points outside it (the points
    the poison goes to, first ones first).

    ## Episode End

    Terminates after the single step.

    ## Info

    ``attack_success_rate`` (fraction of the triggered test inputs of the other
    classes classified as the target), ``clean_accuracy`` (on the clean test
    set), ``clean_accuracy_drop`` (versus the clean victim), ``flagged_fraction``
    (of the poisoned points, flagged by the detector; 0 without poison),
    ``clean_flagged`` and ``clean_flagged_fraction`` (clean training points
    flagged: the detector's false alarms, to compare the flagged fraction with),
    ``poisoned_points`` and
    ``target_label``; at reset only ``target_label`` and ``clean_reference_accuracy``.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded 8x8) or a download dataset of images.
    * ``target_class``: int in ``[0, K - 1]`` (default 0) or ``None`` (drawn per episode).
    * ``budget``: the most points the attacker may poison, as a fraction of the training set, in (0, 1] (default 0.05).
    * ``trigger``: ``"patch"`` (default) or ``"blend"``; ``patch_size`` (default 3, at most the image's side);
      ``position``: ``"free"`` (default, chosen by the action) or a fixed corner
      ``"bottom_right"``, ``"bottom_left"``, ``"top_right"``, ``"top_left"``;
      ``max_blend_alpha`` in (0, 1] (default 0.2).
    * victim: ``hidden_sizes`` (default ``(64,)``), ``train_steps`` (default 100), ``lr`` (default 0.02), ``init_seed`` (default 0).
    * ``detector``: ``"spectral"`` (default), ``"activation_clustering"`` or ``"none"``; ``detection_penalty`` >= 0 (default 1);
      ``ac_size_threshold`` in (0, 0.5] (default 0.35): activation clustering flags a class's smaller
      k-means cluster when its share of the class is below this.
    * ``device`` (default ``"cpu"``): torch device (``"cuda"``, ``"cuda:1"``, ...) of the training data,
      the poisoned training sets, the victims' training and the detector; per step only the
      observations and infos come back to the host.

    ## Version History

    * v0: initial release (activation clustering detector and ``device`` added within v0: new arguments and values, defaults unchanged).
    """

    arguments = {
        "train_steps": Arg(low=1, high=100_000, why="the victim is trained in the constructor; more steps would take hours"),
        "hidden_sizes": Arg(low=1, high=4096, max_len=8, why="wider or deeper victims would exhaust memory"),
    }

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        target_class: int | None = 0,
        budget: float = 0.05,
        trigger: str = "patch",
        patch_size: int = 3,
        position: str = "free",
        max_blend_alpha: float = 0.2,
        hidden_sizes: tuple[int, ...] | list[int] = (64,),
        train_steps: int = 100,
        lr: float = 0.02,
        init_seed: int = 0,
        detector: str = "spectral",
        detection_penalty: float = 1.0,
        ac_size_threshold: float = 0.35,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.device = dev = check_device("device", device)
        self.budget = check_number("budget", budget, low=0.0, high=1.0, low_inclusive=False)
        self.trigger = check_choice("trigger", trigger, TRIGGERS)
        self.position = check_choice("position", position, POSITIONS)
        self.max_blend_alpha = check_number("max_blend_alpha", max_blend_alpha, low=0.0, high=1.0, low_inclusive=False)
        if isinstance(hidden_sizes, (int, np.integer)) or not len(hidden_sizes):
            raise ValueError(f"hidden_sizes={hidden_sizes!r} must be a non-empty list of positive integers")
        self.hidden_sizes = tuple(check_positive("hidden_sizes", h, integer=True) for h in hidden_sizes)
        self.train_steps = check_positive("train_steps", train_steps, integer=True)
        self.lr = check_positive("lr", lr)
        self.init_seed = check_number("init_seed", init_seed, low=0, integer=True)
        self.detector = check_choice("detector", detector, DETECTORS)
        self.detection_penalty = check_number("detection_penalty", detection_penalty, low=0.0)
        self.ac_size_threshold = check_number("ac_size_threshold", ac_size_threshold, low=0.0, high=0.5, low_inclusive=False)

        ds = load_dataset(dataset)
        self.dataset = dataset
        if ds.x_train.ndim != 4:
            raise ValueError(f"dataset={dataset!r} is not an image dataset (inputs of shape {ds.x_train.shape[1:]}); Backdoor-v0 needs images")
        self.K = K = ds.num_classes
        self.img_shape = ds.x_train.shape[1:]  # (C, H, W)
        C, H, W = self.img_shape
        self.H, self.W = H, W
        self.patch_size = check_number("patch_size", patch_size, low=1, high=min(H, W), integer=True)
        self.target_class = None if target_class is None else check_number("target_class", target_class, low=0, high=K - 1, integer=True)
        self.x_train = ds.x_train.astype(np.float32)
        self.y_train = ds.y_train.astype(np.int64)
        self.x_test = ds.x_test.astype(np.float32)
        self.y_test = ds.y_test.astype(np.int64)
        N = len(self.y_train)
        self.d = C * H * W
        self.budget_points = max(1, int(round(self.budget * N)))
        self.eps_points = self.budget_points  # the detector's bound on poisoned points
        self.pools = [np.flatnonzero(self.y_train != c) for c in range(K)]

        self.mlp = BatchedMLP(self.d, self.hidden_sizes, K, lr=self.lr, steps=self.train_steps, init_seed=self.init_seed, device=dev)
        self.x_train_img_t = torch.as_tensor(self.x_train, device=dev)  # (N, C, H, W)
        self.x_test_img_t = torch.as_tensor(self.x_test, device=dev)
        self.x_train_t = self.x_train_img_t.reshape(N, -1)
        self.y_train_t = torch.as_tensor(self.y_train, device=dev)
        self.x_test_t = self.x_test_img_t.reshape(len(self.y_test), -1)
        self.y_test_t = torch.as_tensor(self.y_test, device=dev)
        self.clean_accuracy = self._clean_reference()

        self.class_means = np.stack([self.x_train[self.y_train == c].mean(0) for c in range(K)]).astype(np.float32)
        self.single_observation_space, self.obs_slices = flat_box(
            [("class_means", K * self.d, 0.0, 1.0), ("target_class", K, 0.0, 1.0), ("budget", 1, 0.0, 1.0)]
        )
        p = self.patch_size
        if self.trigger == "patch":
            layout = [("pattern", p * p), ("mask", p * p)] + ([("position", 2)] if self.position == "free" else []) + [("fraction", 1)]
        else:
            layout = [("pattern", H * W), ("alpha", 1), ("fraction", 1)]
        self.single_action_space, self.action_slices = flat_box([(name, size, -1.0, 1.0) for name, size in layout])

        n = self.num_envs
        self.target = np.full(n, -1, np.int64)
        self.order = np.zeros((n, self.budget_points), np.int64)  # first poison candidates of each copy
        self.pool_size = np.zeros(n, np.int64)
        self.last: dict[str, np.ndarray] = {}
        self.last_trigger: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # copy -> (pattern, mask) of its last episode, for the picture
        self._eye = np.eye(K, dtype=np.float32)

    def _clean_reference(self) -> float:
        """Test accuracy of the victim trained the same way on the clean data (cached per process)."""
        key = (self.dataset, self.hidden_sizes, self.train_steps, self.lr, self.init_seed, str(self.device))
        if key not in _CLEAN_ACC:
            logger.info("training the clean reference victim on %s (hidden %s, %d steps)", self.dataset, self.hidden_sizes, self.train_steps)
            params = self.mlp.train(self.x_train_t[None], self.y_train_t[None])
            _CLEAN_ACC[key] = float((self.mlp.predict(params, self.x_test_t)[0] == self.y_test_t).float().mean())
        return _CLEAN_ACC[key]

    # ------------------------------------------------------------ actions
    def _corner(self) -> tuple[int, int]:
        p, H, W = self.patch_size, self.H, self.W
        return {"bottom_right": (H - p, W - p), "bottom_left": (H - p, 0), "top_right": (0, W - p), "top_left": (0, 0)}[self.position]

    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Actions ``(m, n)`` -> full-size trigger patterns and masks ``(m, H, W)`` and poison fractions ``(m,)``."""
        u = (np.asarray(actions, np.float32) + np.float32(1.0)) * np.float32(0.5)
        s, m = self.action_slices, len(u)
        frac = u[:, s["fraction"]][:, 0]
        if self.trigger == "blend":
            pattern = u[:, s["pattern"]].reshape(m, self.H, self.W)
            pat, mask = triggers.blend_to_full(pattern, u[:, s["alpha"]][:, 0] * np.float32(self.max_blend_alpha))
            return pat, mask, frac
        p = self.patch_size
        if self.position == "free":
            pos = u[:, s["position"]]
            rows = np.minimum((pos[:, 0] * (self.H - p + 1)).astype(np.int64), self.H - p)
            cols = np.minimum((pos[:, 1] * (self.W - p + 1)).astype(np.int64), self.W - p)
        else:
            r, c = self._corner()
            rows, cols = np.full(m, r), np.full(m, c)
        pat, mask = triggers.patch_to_full(u[:, s["pattern"]].reshape(m, p, p), u[:, s["mask"]].reshape(m, p, p), rows, cols, (self.H, self.W))
        return pat, mask, frac

    def encode(self, pattern: np.ndarray, mask_or_alpha: np.ndarray, fraction: np.ndarray,
               rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        """Inverse of :meth:`decode`.

        ``trigger="patch"``: ``pattern``, ``mask`` ``(m, p, p)`` in [0, 1], ``fraction (m,)``, and with
        ``position="free"`` the top-left corners ``rows``, ``cols``. ``trigger="blend"``: ``pattern
        (m, H, W)``, opacities ``alpha (m,)`` (at most ``max_blend_alpha``) and ``fraction``.
        """
        pattern = np.asarray(pattern, np.float64)
        m = len(pattern)
        u = np.zeros((m, self.single_action_space.shape[0]))
        s = self.action_slices
        u[:, s["pattern"]] = pattern.reshape(m, -1)
        if self.trigger == "blend":
            u[:, s["alpha"]] = (np.asarray(mask_or_alpha, np.float64) / self.max_blend_alpha).reshape(m, 1)
        else:
            u[:, s["mask"]] = np.asarray(mask_or_alpha, np.float64).reshape(m, -1)
            if self.position == "free":
                if rows is None or cols is None:
                    raise ValueError("position='free' needs rows and cols of the patch's top-left corner")
                p = self.patch_size
                u[:, s["position"]] = np.stack([(np.asarray(rows) + 0.5) / (self.H - p + 1), (np.asarray(cols) + 0.5) / (self.W - p + 1)], 1)
        u[:, s["fraction"]] = np.asarray(fraction, np.float64).reshape(m, 1)
        return np.clip(u * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        for i in idx:
            rng = self.rngs[i]
            c = self.target_class if self.target_class is not None else int(rng.integers(self.K))
            pool = self.pools[c]
            take = min(self.budget_points, len(pool))
            self.target[i] = c
            self.pool_size[i] = take
            self.order[i, :take] = pool[rng.choice(len(pool), size=take, replace=False)]
        info = {"target_label": self.target[idx].copy(), "clean_reference_accuracy": np.full(len(idx), self.clean_accuracy)}
        return self._observe(idx), info

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        m = len(idx)
        pattern, mask, frac = self.decode(actions)
        n_poison = np.minimum(np.round(frac.astype(np.float64) * self.budget_points).astype(np.int64), self.pool_size[idx])
        target = self.target[idx]
        # per-copy poisoned training sets: the first n_poison points of each copy's order, stamped and relabelled
        P = int(n_poison.max()) if m else 0
        N, dev = len(self.y_train), self.device
        # built on the device: only the triggers (the actions) and the indices go over
        pattern_t = torch.as_tensor(pattern, device=dev)
        mask_t = torch.as_tensor(mask, device=dev)
        target_t = torch.as_tensor(target, device=dev)
        x = self.x_train_img_t.expand(m, *self.x_train_img_t.shape).clone()
        y = self.y_train_t.expand(m, N).clone()
        poisoned = torch.zeros((m, N), dtype=torch.bool, device=dev)
        if P:
            valid = np.arange(P)[None, :] < n_poison[:, None]
            pts = self.order[idx, :P]
            stamped = triggers.apply_torch(self.x_train_img_t[torch.as_tensor(pts, device=dev)], pattern_t, mask_t)  # (m, P, C, H, W)
            b = torch.as_tensor(np.broadcast_to(np.arange(m)[:, None], (m, P))[valid], device=dev)
            j = torch.as_tensor(pts[valid], device=dev)
            x[b, j] = stamped[torch.as_tensor(valid, device=dev)]
            y[b, j] = torch.as_tensor(np.broadcast_to(target[:, None], (m, P))[valid], device=dev)
            poisoned[b, j] = True
        xt = x.reshape(m, N, -1)
        yt = y
        params = self.mlp.train(xt, yt)

        # counts on the device (exact integers), divided on the host as before
        correct = (self.mlp.predict(params, self.x_test_t) == self.y_test_t).sum(1)
        triggered = triggers.apply_torch(self.x_test_img_t, pattern_t, mask_t, shared=True).reshape(m, len(self.y_test), -1)
        pred = self.mlp.predict(params, triggered)
        other = self.y_test_t[None, :] != target_t[:, None]
        hits = ((pred == target_t[:, None]) & other).sum(1)

        with torch.no_grad():
            reps = self.mlp.forward(params, xt)[0]
        flagged = detect(self.detector, reps, yt, self.K, self.eps_points, ac_size_threshold=self.ac_size_threshold)
        counts = torch.stack([correct, hits, other.sum(1), (flagged & poisoned).sum(1), (flagged & ~poisoned).sum(1)])
        correct, hits, n_other, flagged_poison, clean_flagged = counts.cpu().numpy()  # the one transfer to the host
        clean_acc = correct / np.float64(len(self.y_test))
        asr = hits / np.maximum(n_other, 1)
        flagged_fraction = np.where(n_poison > 0, flagged_poison / np.maximum(n_poison, 1), 0.0)
        drop = self.clean_accuracy - clean_acc
        reward = asr - np.maximum(drop, 0.0) - self.detection_penalty * flagged_fraction

        info = {
            "attack_success_rate": asr.astype(np.float64),
            "clean_accuracy": clean_acc,
            "clean_accuracy_drop": drop,
            "flagged_fraction": flagged_fraction.astype(np.float64),
            "clean_flagged": clean_flagged,
            "clean_flagged_fraction": clean_flagged / (len(self.y_train) - n_poison),
            "poisoned_points": n_poison,
            "target_label": target.copy(),
        }
        for i, k in enumerate(idx):
            self.last[int(k)] = {key: value[i] for key, value in info.items()}
            self.last_trigger[int(k)] = (pattern[i], mask[i])
        done = np.ones(m, bool)
        return self._observe(idx), reward.astype(np.float64), done, np.zeros(m, bool), info

    # ---------------------------------------------------------- internals
    def _observe(self, idx) -> np.ndarray:
        m = len(idx)
        s = self.obs_slices
        obs = np.empty((m, self.single_observation_space.shape[0]), np.float32)
        obs[:, s["class_means"]] = self.class_means.reshape(-1)
        obs[:, s["target_class"]] = self._eye[self.target[idx]]
        obs[:, s["budget"]] = np.float32(self.budget)
        return obs

    def render_ansi(self, i: int) -> str:
        text = f"Backdoor-v0: target class {self.target[i]}, budget {self.budget_points} points, {self.trigger} trigger, detector {self.detector}"
        last = self.last.get(i)
        if last is not None:
            text += (
                f"; last episode: {last['poisoned_points']} poisoned, ASR {last['attack_success_rate']:.3f}, "
                f"clean accuracy {last['clean_accuracy']:.3f} (clean victim {self.clean_accuracy:.3f}), "
                f"flagged {last['flagged_fraction']:.2f} of the poison"
            )
        return text

    def render_rgb(self, i: int) -> np.ndarray:
        """The trigger of the last episode, a poisoned training point (stamped, relabelled to the target) and the outcome."""
        from deploy_envs.core.rendering import PALETTE, image_of, no_ticks, sketch

        sk = sketch(self, size=(560, 230), grid=(1, 4), width_ratios=(1, 1, 1, 1.8), margins={"left": 0.02, "right": 0.98, "bottom": 0.12, "top": 0.76, "wspace": 0.3})
        target = int(self.target[i])
        ax_t, ax_x, ax_s, ax_b = sk.begin(f"Backdoor: {self.trigger} trigger, target class {target}, budget {self.budget_points} points, detector {self.detector}", fontsize=8)
        point = int(self.order[i, 0]) if self.pool_size[i] else 0
        x = self.x_train[point]
        trig = self.last_trigger.get(i)
        if trig is None:  # before the first step: nothing stamped yet
            pattern = mask = np.zeros((self.H, self.W), np.float32)
        else:
            pattern, mask = (np.asarray(a, np.float32).reshape(self.H, self.W) for a in trig)
        stamped = (1 - mask) * x + mask * pattern  # broadcast over channels
        ax_t.imshow(pattern * mask, cmap="gray", vmin=0, vmax=1)
        ax_t.set_title("trigger", fontsize=8)
        ax_x.imshow(image_of(x), cmap="gray", vmin=0, vmax=1)
        ax_x.set_title(f"clean point: {self.y_train[point]}", fontsize=8)
        ax_s.imshow(image_of(stamped), cmap="gray", vmin=0, vmax=1)
        ax_s.set_title(f"poisoned: label {target}", fontsize=8, color=PALETTE["red"])
        no_ticks(ax_t, ax_x, ax_s)
        last = self.last.get(i)
        names = ["attack\nsuccess", "clean\naccuracy", "clean\nvictim", "poison\nflagged"]
        values = [0.0, 0.0, self.clean_accuracy, 0.0] if last is None else [
            last["attack_success_rate"], last["clean_accuracy"], self.clean_accuracy, last["flagged_fraction"]]
        ax_b.bar(range(4), values, color=[PALETTE["red"], PALETTE["blue"], PALETTE["grey"], PALETTE["orange"]])
        ax_b.set_xticks(range(4), names, fontsize=7)
        ax_b.set_ylim(0, 1)
        ax_b.set_title("last episode" if last is not None else "no episode yet", fontsize=8)
        ax_b.tick_params(labelsize=7)
        return sk.finish()

"""``deploy_envs/Poisoning-v0``: inject poison points into a victim's training set."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import Arg, check_choice, check_device, check_number, check_positive
from deploy_envs.data import load_dataset
from deploy_envs.topics.poisoning.mlp_victim import MLPVictims
from deploy_envs.topics.poisoning.sanitizers import SANITIZERS, Sanitizer
from deploy_envs.topics.poisoning.victims import KINDS, LinearVictims

logger = logging.getLogger(__name__)

GOALS = ("indiscriminate", "targeted")
THREAT_MODELS = ("white_box", "black_box")
VICTIMS = (*KINDS, "mlp")
_CLEAN_FITS: dict[tuple, torch.Tensor] = {}


def clean_fit(dataset: str, victims: LinearVictims | MLPVictims) -> torch.Tensor:
    """The victim trained on the clean data (cached per process: it is the same for every copy and episode)."""
    key = (dataset, victims.kind, victims.lam, getattr(victims, "h", None), getattr(victims, "radius", None))
    if key not in _CLEAN_FITS:
        logger.info("fitting the clean %s victim on %s (lam=%g)", victims.kind, dataset, victims.lam)
        _CLEAN_FITS[key] = victims.fit_clean()
    return _CLEAN_FITS[key]


class PoisoningCore(BatchedCore):
    """## Description

    The agent is a data poisoner. A victim - a linear classifier on the clean
    training set of ``dataset`` (multinomial logistic regression, a one-vs-rest
    linear SVM, or a small one-hidden-layer ReLU MLP) - is retrained as the agent injects poison points, one batch of
    ``points_per_step`` per step, up to ``budget`` times the clean training set's
    size (3% by default, as in Steinhardt, Koh & Liang 2017, "Certified Defenses
    for Data Poisoning Attacks"). Every ``retrain_every`` injected points (and at
    the end) the victim is retrained, warm-started from its current parameters, for
    ``train_steps`` steps (``final_train_steps`` at the end of the episode). A
    defender's ``sanitizer`` screens every incoming point and discards those it
    flags (see :mod:`deploy_envs.topics.poisoning.sanitizers`). Goals: raise the
    victim's test error (``indiscriminate``) or make ``num_targets`` chosen test
    points be classified as ``target_class`` (``targeted``).

    All copies of a vector env train their victims together: one GEMM over the
    shared clean data for all copies (:mod:`deploy_envs.topics.poisoning.victims`,
    :mod:`deploy_envs.topics.poisoning.mlp_victim`).

    ## Action Space

    ``Box(-1, 1, (points_per_step * (d + 1),), float32)`` (symmetric, as SB3
    recommends): for each point, ``d`` coordinates ``a`` giving its features
    ``(a + 1) / 2`` in ``[0, 1]``, then one label coordinate ``a`` giving the class
    ``min(floor((a + 1) / 2 * K), K - 1)``. :meth:`PoisoningCore.encode` and
    :meth:`PoisoningCore.decode` convert between points and actions.

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``params`` | (d+1) K (MLP: d h + h + h K + K) | [-1, 1] | ``white_box`` only: victim weights and biases divided by their bound ``R`` (``victims.radius``) |
    | ``predictions`` | (K + num_probes [+ T]) K | [0, 1] | ``black_box`` only: one-hot predicted labels of the class means, the probe points and the targets |
    | ``class_means`` | K d | [0, 1] | per-class means of the clean training data (the data summary) |
    | ``targets`` | T d | [0, 1] | ``targeted`` only: the target test points |
    | ``target_class`` | K | [0, 1] | ``targeted`` only: one-hot target class |
    | ``budget`` | 1 | [0, 1] | fraction of the poison budget left |
    | ``removed`` | 1 | [0, 1] | fraction of the injected points the sanitizer discarded so far |

    What a realistic attacker sees: the clean training data (a poisoner who
    controls a data source knows or can sample the rest, Steinhardt et al. 2017;
    the baselines read it from ``core.attacker_data()``) and, by ``threat_model``,
    the victim's parameters or only its predicted labels on points of its own.
    The test set on which the victim is scored is the defender's held-out data:
    it never appears in the observation (except the targets the attacker chose);
    its error drives the reward only as the simulator's training signal.

    ## Rewards

    After each retrain: ``reward_scale * (metric_after - metric_before)`` where the
    metric is the test error (``indiscriminate``) or the fraction of targets
    classified as the target class (``targeted``); every step:
    ``- removal_penalty`` per point the sanitizer discarded. With the defaults the
    reward is in percentage points and an episode's return is the damage done.

    ## Starting State

    The victim trained on the clean data (identical for all episodes); an empty
    poison set. In ``targeted`` mode a target class (``target_class`` or drawn
    uniformly) and ``num_targets`` test points of other classes that the clean
    victim classifies correctly, drawn without replacement.

    ## Episode End

    Terminates when the budget is spent, after ``ceil(budget_points / points_per_step)`` steps.

    ## Info

    ``test_error``, ``points_injected``, ``points_removed`` (by the sanitizer, so
    far), ``budget_left`` (fraction), ``retrained`` (whether this step retrained);
    in ``targeted`` mode also ``targeted_success`` (fraction of targets classified
    as the target class), ``success`` (all of them) and ``target_label``.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded; flattened 64 features) or a download dataset.
    * ``victim``: ``"logistic"`` (default), ``"svm"`` or ``"mlp"``; ``lam``: L2 regularisation (default 1e-3);
      MLP only: ``hidden_size`` (default 32), ``mlp_lr`` (retrain step size, default 0.1),
      ``mlp_radius`` (parameter bound, default 4).
    * ``goal``: ``"indiscriminate"`` (default) or ``"targeted"``; ``target_class`` (int or None), ``num_targets`` (default 5).
    * ``budget``: poison points as a fraction of the clean training set, in (0, 1] (default 0.03).
    * ``points_per_step`` (default 1), ``retrain_every`` injected points (default 1),
      ``train_steps`` per retrain (default 20), ``final_train_steps`` (default 400).
    * ``sanitizer``: ``"none"`` (default), ``"centroid"``, ``"loss"``, ``"knn"``;
      ``sanitizer_quantile`` (default 0.95), ``knn_k`` (10), ``knn_agreement`` (0.5).
    * ``threat_model``: ``"white_box"`` (default) or ``"black_box"``; ``num_probes`` (default 20).
    * ``reward_scale`` (default 100), ``removal_penalty`` (default 1).
    * ``device`` (default ``"cpu"``): torch device (``"cuda"``, ``"cuda:1"``, ...) of the victims, the
      poison sets, the test data and every retrain; per step only the observations and infos
      come back to the host. The clean victim is fitted on the CPU, so it is the same on every device.

    ## Version History

    * v0: initial release (the ``"mlp"`` victim and ``device`` added within v0: new arguments and values, defaults unchanged).
    """

    arguments = {
        "train_steps": Arg(low=1, high=100_000, why="training steps run inside the env; more would take hours"),
        "final_train_steps": Arg(low=1, high=100_000, why="training steps run inside the env; more would take hours"),
        "num_targets": Arg(low=1, high=1000),
    }

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        victim: str = "logistic",
        lam: float = 1e-3,
        hidden_size: int = 32,
        mlp_lr: float = 0.1,
        mlp_radius: float = 4.0,
        goal: str = "indiscriminate",
        target_class: int | None = None,
        num_targets: int = 5,
        budget: float = 0.03,
        points_per_step: int = 1,
        retrain_every: int = 1,
        train_steps: int = 20,
        final_train_steps: int = 400,
        sanitizer: str = "none",
        sanitizer_quantile: float = 0.95,
        knn_k: int = 10,
        knn_agreement: float = 0.5,
        threat_model: str = "white_box",
        num_probes: int = 20,
        reward_scale: float = 100.0,
        removal_penalty: float = 1.0,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.device = dev = check_device("device", device)
        self.victim_kind = check_choice("victim", victim, VICTIMS)
        hidden_size = check_positive("hidden_size", hidden_size, integer=True)
        mlp_lr = check_positive("mlp_lr", mlp_lr)
        mlp_radius = check_positive("mlp_radius", mlp_radius)
        self.goal = check_choice("goal", goal, GOALS)
        self.sanitizer_kind = check_choice("sanitizer", sanitizer, SANITIZERS)
        self.threat_model = check_choice("threat_model", threat_model, THREAT_MODELS)
        self.budget = check_number("budget", budget, low=0.0, high=1.0, low_inclusive=False)
        self.lam = check_positive("lam", lam)
        self.points_per_step = check_positive("points_per_step", points_per_step, integer=True)
        self.retrain_every = check_positive("retrain_every", retrain_every, integer=True)
        self.train_steps = check_positive("train_steps", train_steps, integer=True)
        self.final_train_steps = check_positive("final_train_steps", final_train_steps, integer=True)
        quantile = check_number("sanitizer_quantile", sanitizer_quantile, low=0.0, high=1.0, low_inclusive=False)
        self.num_probes = check_positive("num_probes", num_probes, integer=True, allow_zero=True)
        self.reward_scale = check_number("reward_scale", reward_scale)
        self.removal_penalty = check_number("removal_penalty", removal_penalty, low=0.0)

        ds = load_dataset(dataset)
        self.dataset = dataset
        K = self.K = ds.num_classes
        x = ds.x_train.reshape(len(ds.y_train), -1).astype(np.float32)
        self.d = d = x.shape[1]
        knn_k = check_number("knn_k", knn_k, low=1, high=len(x), integer=True)
        knn_agreement = check_number("knn_agreement", knn_agreement, low=0.0, high=1.0)
        self.x_train, self.y_train = x, ds.y_train.astype(np.int64)
        self.x_test = ds.x_test.reshape(len(ds.y_test), -1).astype(np.float32)
        self.y_test = ds.y_test.astype(np.int64)
        self.x_test_t = torch.as_tensor(self.x_test, device=dev)
        self.y_test_t = torch.as_tensor(self.y_test, device=dev)
        self.budget_points = max(1, int(round(self.budget * len(x))))
        self.max_steps = math.ceil(self.budget_points / self.points_per_step)
        self.slots = self.max_steps * self.points_per_step

        self.targeted = goal == "targeted"
        self.target_class = None
        if target_class is not None:
            if not self.targeted:
                raise ValueError(f"target_class={target_class!r} needs goal='targeted'")
            self.target_class = check_number("target_class", target_class, low=0, high=K - 1, integer=True)
        self.num_targets = check_positive("num_targets", num_targets, integer=True) if self.targeted else 0

        if victim == "mlp":
            self.victims = MLPVictims(x, self.y_train, K, self.lam, hidden_size, lr=mlp_lr, radius=mlp_radius, device=dev)
        else:
            self.victims = LinearVictims(victim, x, self.y_train, K, self.lam, self.budget_points, device=dev)
        self.theta_clean = clean_fit(dataset, self.victims).to(dev)
        self.sanitizer = Sanitizer(sanitizer, x, self.y_train, K, quantile=quantile, knn_k=knn_k, knn_agreement=knn_agreement,
                                   device=dev)
        clean_pred = self.victims.scores(self.theta_clean[None], self.x_test_t)[0].argmax(-1).cpu().numpy()
        self.clean_test_error = float((clean_pred != self.y_test).mean())
        self.target_pool = np.flatnonzero(clean_pred == self.y_test)
        if self.targeted:
            for c in ([self.target_class] if self.target_class is not None else range(K)):
                if (self.y_test[self.target_pool] != c).sum() < self.num_targets:
                    raise ValueError(f"num_targets={num_targets} is more than the correctly classified test points outside class {c}")
        self.class_means = np.stack([x[self.y_train == c].mean(0) for c in range(K)]).astype(np.float32)
        probe_rng = np.random.default_rng(0)  # fixed probe points: part of the env, not of an episode
        self.probes = x[probe_rng.choice(len(x), size=min(self.num_probes, len(x)), replace=False)]
        self.shared_probes_t = torch.as_tensor(np.concatenate([self.class_means, self.probes]), device=dev)

        T = self.num_targets
        parts = []
        if self.threat_model == "white_box":
            parts.append(("params", self.victims.num_params, -1.0, 1.0))
        else:
            parts.append(("predictions", (K + len(self.probes) + T) * K, 0.0, 1.0))
        parts.append(("class_means", K * d, 0.0, 1.0))
        if self.targeted:
            parts += [("targets", T * d, 0.0, 1.0), ("target_class", K, 0.0, 1.0)]
        parts += [("budget", 1, 0.0, 1.0), ("removed", 1, 0.0, 1.0)]
        self.single_observation_space, self.obs_slices = flat_box(parts)
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.points_per_step * (d + 1),), dtype=np.float32)

        n = self.num_envs
        self.theta = self.theta_clean.unsqueeze(0).expand(n, *self.theta_clean.shape).clone()
        # each copy's poison set (points, labels, weights: 0 = not injected or discarded), on the device
        self.xe = torch.zeros((n, self.slots, d), dtype=torch.float32, device=dev)
        self.ye = torch.zeros((n, self.slots), dtype=torch.int64, device=dev)
        self.we = torch.zeros((n, self.slots), dtype=torch.float32, device=dev)
        self.injected = np.zeros(n, np.int64)
        self.removed = np.zeros(n, np.int64)
        self.since_retrain = np.zeros(n, np.int64)
        self.metric = np.zeros(n, np.float64)
        self.test_error = np.full(n, self.clean_test_error)
        self.targets = np.zeros((n, T), np.int64)
        self.target = np.full(n, -1, np.int64)
        self.targeted_success = np.zeros(n)
        self._eye = np.eye(K, dtype=np.float32)

    # ----------------------------------------------------------- knowledge
    def attacker_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The clean training data, which the threat model lets the attacker know (flattened inputs, labels)."""
        return self.x_train, self.y_train

    def decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions ``(m, points_per_step * (d+1))`` -> points ``(m, p, d)`` and labels ``(m, p)``."""
        a = (actions.reshape(len(actions), self.points_per_step, self.d + 1) + np.float32(1.0)) * np.float32(0.5)
        labels = np.minimum((a[..., self.d] * self.K).astype(np.int64), self.K - 1)
        return np.ascontiguousarray(a[..., : self.d]), labels

    def encode(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`decode`: points ``(m, p, d)`` and labels ``(m, p)`` -> actions."""
        lab = ((np.asarray(labels) + 0.5) / self.K)[..., None]
        a = np.concatenate([np.clip(x, 0, 1), lab], -1) * 2.0 - 1.0
        return np.clip(a, -1.0, 1.0).astype(np.float32).reshape(len(x), -1)

    # --------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, np.int64)
        self.theta[idx] = self.theta_clean
        self.xe[idx] = 0.0
        self.ye[idx] = 0
        self.we[idx] = 0.0
        self.injected[idx] = 0
        self.removed[idx] = 0
        self.since_retrain[idx] = 0
        if self.targeted:
            for i in idx:
                rng = self.rngs[i]
                c = self.target_class if self.target_class is not None else int(rng.integers(self.K))
                pool = self.target_pool[self.y_test[self.target_pool] != c]
                self.target[i] = c
                self.targets[i] = pool[rng.choice(len(pool), size=self.num_targets, replace=False)]
        self._measure(idx)
        self.metric[idx] = self.targeted_success[idx] if self.targeted else self.test_error[idx]
        return self._observe(idx), self._info(idx, np.zeros(len(idx), bool))

    # ---------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        xs, ys = self.decode(actions)
        keep = self.sanitizer.keep(xs, ys, self.theta[idx], self.victims)
        return self.inject(idx, xs, ys, keep)

    def inject(self, idx, xs: np.ndarray, ys: np.ndarray, keep: np.ndarray):
        """Add points ``xs (m, p, d)``, labels ``ys (m, p)`` to copies ``idx``, those with ``keep`` False discarded.

        The step after the sanitizer's decision (the poisoner-vs-sanitizer game makes that
        decision itself); returns ``step_indices``' tuple.
        """
        p = self.points_per_step
        keep = np.array(keep, dtype=bool)
        left = self.budget_points - self.injected[idx]
        counted = np.arange(p)[None, :] < left[:, None]  # points past the budget on the last step are ignored
        keep &= counted
        start = self.injected[idx] if p == 1 else (self.injected[idx] // p) * p
        slot = start[:, None] + np.arange(p)[None, :]
        dev = self.device
        rows = torch.as_tensor(np.repeat(idx, p), device=dev)
        cols = torch.as_tensor(slot.ravel(), device=dev)
        self.xe[rows, cols] = torch.as_tensor(np.ascontiguousarray(xs, np.float32).reshape(-1, self.d), device=dev)
        self.ye[rows, cols] = torch.as_tensor(np.asarray(ys, np.int64).ravel(), device=dev)
        self.we[rows, cols] = torch.as_tensor(keep.ravel().astype(np.float32), device=dev)
        n_new = counted.sum(1)
        n_removed = (counted & ~keep).sum(1)
        self.injected[idx] += n_new
        self.removed[idx] += n_removed
        self.since_retrain[idx] += n_new
        done = self.injected[idx] >= self.budget_points
        retrain = done | (self.since_retrain[idx] >= self.retrain_every)
        reward = -self.removal_penalty * n_removed.astype(np.float64)
        for final in (False, True):
            sel = retrain & (done == final)
            if not sel.any():
                continue
            sub = idx[sel]
            steps = self.final_train_steps if final else self.train_steps
            self.theta[sub] = self.victims.train(self.theta[sub], self.xe[sub], self.ye[sub], self.we[sub], steps)
        if retrain.any():
            sub = idx[retrain]
            self._measure(sub)
            new = self.targeted_success[sub] if self.targeted else self.test_error[sub]
            reward[retrain] += self.reward_scale * (new - self.metric[sub])
            self.metric[sub] = new
            self.since_retrain[sub] = 0
        return self._observe(idx), reward, done, np.zeros(len(idx), bool), self._info(idx, retrain)

    # ----------------------------------------------------------- internals
    def _measure(self, idx) -> None:
        """Test error (and targeted success) of the victims of copies ``idx``."""
        dev = self.device
        pred = self.victims.scores(self.theta[idx], self.x_test_t).argmax(-1)  # (m, n_test), on the device
        # counts are exact integers: count / n is the mean numpy would take of the boolean array
        wrong = (pred != self.y_test_t[None]).sum(1)
        if self.targeted:
            tp = torch.gather(pred, 1, torch.as_tensor(self.targets[idx], device=dev))
            hits = (tp == torch.as_tensor(self.target[idx], device=dev)[:, None]).sum(1)
            wrong, hits = torch.stack([wrong, hits]).cpu().numpy()
            self.targeted_success[idx] = hits / self.num_targets
        else:
            wrong = wrong.cpu().numpy()
        self.test_error[idx] = wrong / len(self.y_test)

    def _observe(self, idx) -> np.ndarray:
        m = len(idx)
        s = self.obs_slices
        obs = np.empty((m, self.obs_dim), np.float32)
        theta = self.theta[idx]
        if self.threat_model == "white_box":
            obs[:, s["params"]] = np.clip(theta.reshape(m, -1).cpu().numpy() / np.float32(self.victims.radius), -1.0, 1.0)
        else:
            pred = self.victims.scores(theta, self.shared_probes_t).argmax(-1)
            if self.targeted:
                targets = self.x_test_t[torch.as_tensor(self.targets[idx], device=self.device)]
                pred = torch.cat([pred, self.victims.scores_each(theta, targets).argmax(-1)], 1)
            obs[:, s["predictions"]] = self._eye[pred.cpu().numpy()].reshape(m, -1)
        obs[:, s["class_means"]] = self.class_means.reshape(-1)
        if self.targeted:
            obs[:, s["targets"]] = self.x_test[self.targets[idx]].reshape(m, -1)
            obs[:, s["target_class"]] = self._eye[self.target[idx]]
        obs[:, s["budget"]] = (1.0 - self.injected[idx] / self.budget_points)[:, None]
        obs[:, s["removed"]] = (self.removed[idx] / np.maximum(self.injected[idx], 1))[:, None]
        return obs

    def _info(self, idx, retrained) -> dict[str, np.ndarray]:
        info = {
            "test_error": self.test_error[idx].copy(),
            "points_injected": self.injected[idx].copy(),
            "points_removed": self.removed[idx].copy(),
            "budget_left": 1.0 - self.injected[idx] / self.budget_points,
            "retrained": np.asarray(retrained, bool).copy(),
        }
        if self.targeted:
            info["targeted_success"] = self.targeted_success[idx].copy()
            info["success"] = self.targeted_success[idx] >= 1.0
            info["target_label"] = self.target[idx].copy()
        return info

    def render_ansi(self, i: int) -> str:
        text = (
            f"{self.victim_kind} victim, sanitizer {self.sanitizer_kind}: injected {self.injected[i]}/{self.budget_points}, "
            f"removed {self.removed[i]}, test error {self.test_error[i]:.3f} (clean {self.clean_test_error:.3f})"
        )
        if self.targeted:
            text += f", targets -> {self.target[i]}: {self.targeted_success[i]:.2f}"
        return text

    def render_rgb(self, i: int) -> np.ndarray:
        """The poison points among the clean training data (a fixed 2-D PCA view) and the victim's error."""
        return render_poisoning(self, i, "Poisoning")


def _pca_view(core: PoisoningCore):
    """A fixed 2-D view of the training data: the top two principal axes and a sample of 400 points (computed once per core)."""
    from deploy_envs.core.rendering import _CACHE

    store = _CACHE.setdefault(core, {})
    if "pca" not in store:
        x = core.x_train
        mean = x.mean(0)
        xc = (x - mean).astype(np.float64)
        _, vecs = np.linalg.eigh(xc.T @ xc)  # the d x d covariance: cheaper than an SVD of the data
        axes = vecs[:, ::-1][:, :2]
        pick = np.random.default_rng(0).choice(len(x), size=min(400, len(x)), replace=False)  # a fixed sample; not the env's rng
        store["pca"] = (mean, axes, (x[pick] - mean) @ axes, core.y_train[pick])
    return store["pca"]


def render_poisoning(core: PoisoningCore, i: int, name: str, extra: str = "", sanitizer: str | None = None) -> np.ndarray:
    """Copy ``i``'s injected points (kept: red, removed by the sanitizer: grey) over the clean data, and the victim's error."""
    from deploy_envs.core.rendering import PALETTE, sketch

    sk = sketch(core, "poisoning", size=(560, 290), grid=(1, 2), width_ratios=(1.7, 1), margins={"left": 0.05, "wspace": 0.3, "top": 0.8})
    ax, ax_b = sk.begin(f"{name}: {core.victim_kind} victim, sanitizer {sanitizer or core.sanitizer_kind}: injected {core.injected[i]}/{core.budget_points}, "
                        f"removed {core.removed[i]}{extra}", fontsize=8)
    mean, axes, clean2d, labels = _pca_view(core)
    ax.scatter(clean2d[:, 0], clean2d[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=6, alpha=0.35, linewidths=0)
    xe = core.xe[i].detach().cpu().numpy()
    we = core.we[i].detach().cpu().numpy()
    used = (np.abs(xe).sum(1) > 0) | (we > 0)
    if used.any():
        pts = (xe[used] - mean) @ axes
        kept = we[used] > 0
        ax.scatter(pts[kept, 0], pts[kept, 1], marker="x", s=30, color=PALETTE["red"], label="poison kept")
        ax.scatter(pts[~kept, 0], pts[~kept, 1], marker="x", s=30, color=PALETTE["grey"], label="poison removed")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_title("training data (PCA), coloured by class", fontsize=8)
    ax.tick_params(labelsize=7)
    if core.targeted:
        ax_b.bar([0], [core.targeted_success[i]], color=PALETTE["red"])
        ax_b.set_xticks([0], [f"targets -> {core.target[i]}"], fontsize=7)
        ax_b.set_title("targeted success", fontsize=8)
    else:
        ax_b.bar([0, 1], [core.clean_test_error, core.test_error[i]], color=[PALETTE["grey"], PALETTE["red"]])
        ax_b.set_xticks([0, 1], ["clean victim", "poisoned victim"], fontsize=7)
        ax_b.set_title("test error", fontsize=8)
    ax_b.set_ylim(0, 1)
    ax_b.tick_params(labelsize=7)
    return sk.finish()

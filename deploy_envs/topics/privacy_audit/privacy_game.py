"""``deploy_envs/PrivacyGame-v0``: a trainer picks DP-SGD's noise and clipping, an auditor attacks with a canary."""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.topics.privacy_audit.dpsgd import (
    Canary,
    DPConfig,
    accuracy,
    canary_scores,
    epsilon_lower_bound,
    theoretical_epsilon,
    train_runs,
)
from deploy_envs.topics.privacy_audit.privacy_audit import CANARY_SPACES, EPS_SCALE, QUANTILES, audit_data

AGENTS = ("trainer", "auditor")


class PrivacyGameCore(GameCore):
    """## Description

    A two-player game on DP-SGD (logistic regression on embedded digits; :mod:`.dpsgd`).
    Each round the **trainer** chooses the noise multiplier and the clipping norm of
    DP-SGD, and the **auditor** designs a canary and an attack threshold, as in
    ``PrivacyAudit-v0`` (Jagielski et al. 2020; Nasr et al. 2021, 2023). The env trains
    ``runs`` models with the trainer's recipe, half with the canary; the attack's true and
    false positives give an empirical epsilon lower bound (Clopper-Pearson). The auditor
    is paid the bound; the trainer pays the bound and the accuracy its models lose. All
    copies' runs train in one batched computation (each copy with its own recipe).

    ## Action Space

    ``trainer``: ``Box(0, 1, (2,), float32)``: noise multiplier
    ``sigma_min * (sigma_max / sigma_min) ** a[0]`` and clipping norm
    ``clip_min * (clip_max / clip_min) ** a[1]`` (log scales).
    ``auditor``: ``Box(0, 1, (66,), float32)``, as ``PrivacyAudit-v0``'s action (canary
    image and label, or a gradient coordinate with ``canary_space="gradient"``, and the
    threshold).

    ## Observation Space

    ``trainer``: ``Box(0, 1, (4,))``: last round's ``lower_bound`` and ``claimed_epsilon``
    (``min(eps / 20, 1)``), its models' test ``accuracy``, ``rounds_left``.
    ``auditor``: ``Box(0, 1, (27,))``: ``PrivacyAudit-v0``'s observation for the last
    round (the claimed epsilon of the trainer's last recipe, rounds left, score quantiles of
    runs with and without the canary, TPR, FPR, bound).

    ## Rewards

    ``auditor``: the round's lower bound ``eps_lb``. ``trainer``:
    ``-eps_lb - accuracy_weight * (1 - accuracy)``.

    ## Starting State

    No round yet (zeros); all randomness from the copy's generator.

    ## Episode End

    Terminates after ``rounds`` rounds; no truncation.

    ## Arguments

    ``rounds`` (3), ``runs`` (64, even), ``train_size`` (256), ``batch_size`` (128),
    ``epochs`` (8), ``lr`` (2.0), ``delta`` (1e-5), ``confidence`` (0.95),
    ``sigma_min`` / ``sigma_max`` (0.5 / 8), ``clip_min`` / ``clip_max`` (0.1 / 10),
    ``accuracy_weight`` (10), ``canary_space`` (``"input"`` or ``"gradient"``),
    ``gradient_norm`` (10).

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 2}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        rounds: int = 3,
        runs: int = 64,
        train_size: int = 256,
        batch_size: int = 128,
        epochs: int = 8,
        lr: float = 2.0,
        delta: float = 1e-5,
        confidence: float = 0.95,
        sigma_min: float = 0.5,
        sigma_max: float = 8.0,
        clip_min: float = 0.1,
        clip_max: float = 10.0,
        accuracy_weight: float = 10.0,
        canary_space: str = "input",
        gradient_norm: float = 10.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.rounds = check_positive("rounds", rounds, integer=True)
        self.runs = check_number("runs", runs, low=2, high=4096, integer=True)
        if self.runs % 2:
            raise ValueError(f"runs={runs} must be even (half the runs include the canary)")
        self.train_size = check_number("train_size", train_size, low=16, high=1437, integer=True)
        batch_size = check_positive("batch_size", batch_size, integer=True)
        if batch_size > self.train_size:
            raise ValueError(f"batch_size={batch_size} must be at most train_size={train_size}")
        self.cfg = DPConfig(batch_size=batch_size, epochs=check_positive("epochs", epochs, integer=True), lr=check_positive("lr", lr),
                            delta=check_number("delta", delta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False))
        self.confidence = check_number("confidence", confidence, low=0.5, high=1.0, high_inclusive=False)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_number("sigma_max", sigma_max, low=self.sigma_min)
        self.clip_min = check_positive("clip_min", clip_min)
        self.clip_max = check_number("clip_max", clip_max, low=self.clip_min)
        self.accuracy_weight = check_number("accuracy_weight", accuracy_weight, low=0.0)
        self.canary_space = check_choice("canary_space", canary_space, CANARY_SPACES)
        self.gradient_norm = check_positive("gradient_norm", gradient_norm)
        self.data = audit_data(self.train_size)
        self.d, self.K = int(self.data["x"].shape[1]), 10
        self.P = (self.d + 1) * self.K
        self.action_spaces = {"trainer": spaces.Box(0.0, 1.0, (2,), dtype=np.float32),
                              "auditor": spaces.Box(0.0, 1.0, (self.d + 2,), dtype=np.float32)}
        trainer_space, self.trainer_slices = flat_box([("lower_bound", 1, 0.0, 1.0), ("claimed_epsilon", 1, 0.0, 1.0),
                                                       ("accuracy", 1, 0.0, 1.0), ("rounds_left", 1, 0.0, 1.0)])
        nq = len(QUANTILES)
        auditor_space, self.obs_slices = flat_box([
            ("claimed_epsilon", 1, 0.0, 1.0), ("budget_left", 1, 0.0, 1.0), ("in_quantiles", nq, 0.0, 1.0),
            ("out_quantiles", nq, 0.0, 1.0), ("tpr", 1, 0.0, 1.0), ("fpr", 1, 0.0, 1.0), ("lower_bound", 1, 0.0, 1.0)])
        self.observation_spaces = {"trainer": trainer_space, "auditor": auditor_space}
        # the auditor's reference agents read these, as on PrivacyAudit-v0
        self.single_action_space = self.action_spaces["auditor"]
        self.single_observation_space = auditor_space
        n = self.num_envs
        self.round = np.zeros(n, np.int64)
        self.audit_obs = np.zeros((n, auditor_space.shape[0] - 2), np.float32)
        self.stats = {k: np.zeros(n) for k in ("eps_lb", "claimed_epsilon", "accuracy", "tpr", "fpr", "noise_multiplier", "max_grad_norm")}
        self._eps_cache: dict[float, float] = {}
        self.last_scores = np.zeros((n, self.runs))  # the last round's canary scores and threshold (for the picture)
        self.last_threshold = np.full(n, np.nan)

    # ------------------------------------------------------------ helpers
    def recipe(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise multipliers and clipping norms of trainer actions ``(B, 2)``."""
        a = np.asarray(a, np.float64)
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** a[:, 0]
        clip = self.clip_min * (self.clip_max / self.clip_min) ** a[:, 1]
        return sigma, clip

    def claimed(self, sigma: float) -> float:
        key = round(float(sigma), 12)
        if key not in self._eps_cache:
            self._eps_cache[key] = theoretical_epsilon(self.cfg, self.train_size, key)
        return self._eps_cache[key]


    def _observe(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        left = (self.rounds - self.round[idx]) / self.rounds
        tr = np.zeros((k, 4), np.float32)
        tr[:, 0] = np.minimum(self.stats["eps_lb"][idx] / EPS_SCALE, 1.0)
        tr[:, 1] = np.minimum(self.stats["claimed_epsilon"][idx] / EPS_SCALE, 1.0)
        tr[:, 2] = self.stats["accuracy"][idx]
        tr[:, 3] = left
        au = np.zeros((k, self.observation_spaces["auditor"].shape[0]), np.float32)
        au[:, 0] = tr[:, 1]
        au[:, 1] = left
        au[:, 2:] = self.audit_obs[idx]
        return {"trainer": np.clip(tr, 0.0, 1.0), "auditor": np.clip(au, 0.0, 1.0)}

    def _info(self, idx: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        info = {k: v[idx].copy() for k, v in self.stats.items()}
        info["round"] = self.round[idx].copy()
        return {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}

    def state_of(self, idx):
        obs = self._observe(np.asarray(idx, np.int64))
        return np.concatenate([obs["trainer"], obs["auditor"]], 1)

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):  # no reset options (any given are ignored, as PettingZoo's tests pass some)
        idx = np.asarray(idx, np.int64)
        self.round[idx] = 0
        self.audit_obs[idx] = 0.0
        for v in self.stats.values():
            v[idx] = 0.0
        self.last_scores[idx] = 0.0
        self.last_threshold[idx] = np.nan
        return self._observe(idx), self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        idx = np.asarray(idx, np.int64)
        b, R, h = len(idx), self.runs, self.runs // 2
        sigma, clip = self.recipe(actions["trainer"])
        a = torch.from_numpy(np.asarray(actions["auditor"], np.float64))
        kind = torch.full((b,), 1 if self.canary_space == "gradient" else 0, dtype=torch.int64)
        label = torch.clamp((a[:, self.d] * self.K).long(), max=self.K - 1)
        coord = torch.clamp((a[:, self.d] * self.P).long(), max=self.P - 1)
        threshold = a[:, self.d + 1].numpy()
        gens = [torch.Generator().manual_seed(int(self.rngs[i].integers(2**62))) for i in idx]
        rep = lambda t: t.repeat_interleave(R, 0)  # noqa: E731
        canary = Canary(rep(kind), rep(a[:, : self.d]), rep(label), rep(coord), self.gradient_norm)
        included = torch.tensor(([True] * h + [False] * h) * b)
        sig_t, clip_t = rep(torch.from_numpy(sigma)), rep(torch.from_numpy(clip))
        theta = train_runs(self.data["x"], self.data["y"], self.K, self.cfg, canary, included, gens, sig_t, clip_t)
        steps = self.cfg.steps(self.train_size)
        scale = self.cfg.lr * sig_t * clip_t * math.sqrt(steps) / self.cfg.batch_size
        scores = canary_scores(theta, canary, self.cfg, self.train_size, noise_scale=scale).numpy().reshape(b, R)
        acc = accuracy(theta, self.data["x_test"], self.data["y_test"]).numpy().reshape(b, R).mean(1)
        guess = scores > threshold[:, None]
        tp, fp = guess[:, :h].sum(1), guess[:, h:].sum(1)
        self.last_scores[idx], self.last_threshold[idx] = scores, threshold
        eps_lb = epsilon_lower_bound(tp, fp, h, h, self.cfg.delta, self.confidence)
        claimed = np.array([self.claimed(s) for s in sigma])
        q = np.asarray(QUANTILES)
        self.audit_obs[idx] = np.concatenate([
            np.quantile(scores[:, :h], q, axis=1).T, np.quantile(scores[:, h:], q, axis=1).T,
            (tp / h)[:, None], (fp / h)[:, None], np.minimum(eps_lb / EPS_SCALE, 1.0)[:, None]], 1).astype(np.float32)
        for k, v in (("eps_lb", eps_lb), ("claimed_epsilon", claimed), ("accuracy", acc), ("tpr", tp / h), ("fpr", fp / h),
                     ("noise_multiplier", sigma), ("max_grad_norm", clip)):
            self.stats[k][idx] = v
        self.round[idx] += 1
        rewards = {"auditor": eps_lb.astype(np.float64), "trainer": -eps_lb - self.accuracy_weight * (1.0 - acc)}
        terminated = self.round[idx] >= self.rounds
        return self._observe(idx), rewards, terminated, np.zeros(b, bool), self._info(idx)

    def render_ansi(self, i: int) -> str:
        s = self.stats
        return (f"round {self.round[i]}/{self.rounds}: sigma {s['noise_multiplier'][i]:.2f} clip {s['max_grad_norm'][i]:.2f} "
                f"(claims eps {s['claimed_epsilon'][i]:.2f}) accuracy {s['accuracy'][i]:.3f}; audit TPR {s['tpr'][i]:.2f} "
                f"FPR {s['fpr'][i]:.2f} -> eps_lb {s['eps_lb'][i]:.2f}")

    def render_rgb(self, i: int) -> np.ndarray:
        """The trainer's recipe and the auditor's last round: canary scores with and without the canary, the threshold,
        and the epsilon lower bound against the recipe's claim."""
        from deploy_envs.core.rendering import sketch
        from deploy_envs.topics.privacy_audit.privacy_audit import draw_audit

        sk = sketch(self, size=(560, 270), grid=(1, 2), width_ratios=(1.7, 1), margins={"left": 0.07, "wspace": 0.3, "bottom": 0.17, "top": 0.8})
        s = self.stats
        played = self.round[i] > 0
        recipe = (f"trainer: sigma {s['noise_multiplier'][i]:.2f}, clip {s['max_grad_norm'][i]:.2f}, accuracy {s['accuracy'][i]:.3f}"
                  if played else "no round played yet")
        ax_h, ax_b = sk.begin(f"PrivacyGame: round {self.round[i]}/{self.rounds}\n{recipe}; auditor TPR {s['tpr'][i]:.2f}, FPR {s['fpr'][i]:.2f}", fontsize=8)
        draw_audit(ax_h, ax_b, self.last_scores[i], self.last_threshold[i], s["eps_lb"][i], s["claimed_epsilon"][i], self.confidence, played)
        return sk.finish()

"""``deploy_envs/PrivacyGame-v0``: a trainer picks DP-SGD's noise and clipping, an auditor attacks with a canary."""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_number, check_positive
from deploy_envs.topics.privacy_audit.dpsgd import theoretical_epsilon
from deploy_envs.topics.privacy_audit.privacy_audit import EPS_SCALE, CanaryAudit, checked_dp_config

AGENTS = ("trainer", "auditor")


class PrivacyGameCore(CanaryAudit, GameCore):
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
        auditor_space = self._init_audit(checked_dp_config(batch_size, epochs, lr, delta), train_size, runs, confidence, canary_space, gradient_norm)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_number("sigma_max", sigma_max, low=self.sigma_min)
        self.clip_min = check_positive("clip_min", clip_min)
        self.clip_max = check_number("clip_max", clip_max, low=self.clip_min)
        self.accuracy_weight = check_number("accuracy_weight", accuracy_weight, low=0.0)
        self.action_spaces = {"trainer": spaces.Box(0.0, 1.0, (2,), dtype=np.float32),
                              "auditor": spaces.Box(0.0, 1.0, (self.d + 2,), dtype=np.float32)}
        trainer_space, self.trainer_slices = flat_box([("lower_bound", 1, 0.0, 1.0), ("claimed_epsilon", 1, 0.0, 1.0),
                                                       ("accuracy", 1, 0.0, 1.0), ("rounds_left", 1, 0.0, 1.0)])
        self.observation_spaces = {"trainer": trainer_space, "auditor": auditor_space}
        # the auditor's reference agents read these, as on PrivacyAudit-v0
        self.single_action_space = self.action_spaces["auditor"]
        self.single_observation_space = auditor_space
        self.stats = {k: np.zeros(self.num_envs) for k in ("eps_lb", "claimed_epsilon", "accuracy", "tpr", "fpr", "noise_multiplier", "max_grad_norm")}
        self._eps_cache: dict[float, float] = {}

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
        au[:, 2:] = self.last[idx]
        return {"trainer": np.clip(tr, 0.0, 1.0), "auditor": np.clip(au, 0.0, 1.0)}

    def _info(self, idx: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        info = {k: v[idx].copy() for k, v in self.stats.items()}
        info["round"] = self.round[idx].copy()
        return {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):  # no reset options (any given are ignored, as PettingZoo's tests pass some)
        idx = np.asarray(idx, np.int64)
        self._reset_audit(idx)
        return self._observe(idx), self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        idx = np.asarray(idx, np.int64)
        b, h = len(idx), self.runs // 2
        sigma, clip = self.recipe(actions["trainer"])
        eps_lb, tp, fp, acc = self._audit(idx, actions["auditor"], sigma, clip)
        claimed = np.array([self.claimed(s) for s in sigma])
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

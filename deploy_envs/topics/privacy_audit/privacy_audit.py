"""``deploy_envs/PrivacyAudit-v0``: audit DP-SGD by designing a canary and turning the attack into an epsilon lower bound."""
from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
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

CANARY_SPACES = ("input", "gradient")
QUANTILES = tuple(np.linspace(0.0, 1.0, 11))
EPS_SCALE = 20.0
"""Epsilons are observed as ``min(eps / EPS_SCALE, 1)``."""


def checked_dp_config(batch_size: int, epochs: int, lr: float, delta: float, **recipe) -> DPConfig:
    """A :class:`DPConfig` from checked constructor arguments (``recipe``: its other fields, checked by the caller)."""
    return DPConfig(
        batch_size=check_positive("batch_size", batch_size, integer=True),
        epochs=check_positive("epochs", epochs, integer=True),
        lr=check_positive("lr", lr),
        delta=check_number("delta", delta, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False),
        **recipe,
    )


def audit_data(train_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The trainer's data: ``train_size`` digits from the train split (fixed by ``seed``) and the test split."""
    from deploy_envs.data import load_dataset

    ds = load_dataset("digits")
    n = len(ds.y_train)
    perm = np.random.default_rng(seed).permutation(n)[:train_size]
    x = ds.x_train.reshape(n, -1)[perm].astype(np.float64)
    return {
        "x": torch.from_numpy(x),
        "y": torch.from_numpy(ds.y_train[perm].astype(np.int64)),
        "x_test": torch.from_numpy(ds.x_test.reshape(len(ds.y_test), -1).astype(np.float64)),
        "y_test": torch.from_numpy(ds.y_test.astype(np.int64)),
    }



class CanaryAudit:
    """The auditor's side that ``PrivacyAudit-v0`` and the ``PrivacyGame-v0`` game share: checked audit
    arguments, the data, the auditor's action and observation layout, and one audit round (train
    ``runs`` models per copy, half with the canary, and bound epsilon from the attack's hits)."""

    def _init_audit(self, cfg: DPConfig, train_size: int, runs: int, confidence: float, canary_space: str, gradient_norm: float) -> spaces.Box:
        """Check and keep the audit's arguments, load the data; returns the auditor's observation space."""
        self.cfg = cfg
        self.train_size = check_number("train_size", train_size, low=16, high=1437, integer=True)
        if cfg.batch_size > self.train_size:
            raise ValueError(f"batch_size={cfg.batch_size} must be at most train_size={train_size}")
        self.runs = check_number("runs", runs, low=2, high=4096, integer=True)
        if self.runs % 2:
            raise ValueError(f"runs={runs} must be even (half the runs include the canary)")
        self.confidence = check_number("confidence", confidence, low=0.5, high=1.0, high_inclusive=False)
        self.canary_space = check_choice("canary_space", canary_space, CANARY_SPACES)
        self.gradient_norm = check_positive("gradient_norm", gradient_norm)
        self.data = audit_data(self.train_size)
        self.d, self.K = int(self.data["x"].shape[1]), 10
        self.P = (self.d + 1) * self.K
        nq = len(QUANTILES)
        space, self.obs_slices = flat_box([
            ("claimed_epsilon", 1, 0.0, 1.0), ("budget_left", 1, 0.0, 1.0), ("in_quantiles", nq, 0.0, 1.0),
            ("out_quantiles", nq, 0.0, 1.0), ("tpr", 1, 0.0, 1.0), ("fpr", 1, 0.0, 1.0), ("lower_bound", 1, 0.0, 1.0),
        ])
        n = self.num_envs
        self.round = np.zeros(n, np.int64)
        self.last = np.zeros((n, space.shape[0] - 2), np.float32)  # the auditor's observation after the budget
        self.last_scores = np.zeros((n, self.runs))  # the last round's canary scores and threshold (for the picture)
        self.last_threshold = np.full(n, np.nan)
        return space

    def _reset_audit(self, idx: np.ndarray) -> None:
        self.round[idx] = 0
        self.last[idx] = 0.0
        for v in self.stats.values():
            v[idx] = 0.0
        self.last_scores[idx] = 0.0
        self.last_threshold[idx] = np.nan

    def decode(self, actions: np.ndarray) -> tuple[Canary, np.ndarray]:
        """The canaries (one per copy) and thresholds of a batch of actions."""
        a = torch.from_numpy(np.asarray(actions, np.float64))
        b = len(a)
        kind = torch.full((b,), 1 if self.canary_space == "gradient" else 0, dtype=torch.int64)
        label = torch.clamp((a[:, self.d] * self.K).long(), max=self.K - 1)
        coord = torch.clamp((a[:, self.d] * self.P).long(), max=self.P - 1)
        return Canary(kind, a[:, : self.d], label, coord, self.gradient_norm), a[:, self.d + 1].numpy()

    def _audit(self, idx: np.ndarray, actions: np.ndarray, sigma: np.ndarray | None = None, clip: np.ndarray | None = None):
        """One audit round in copies ``idx`` with the auditor's ``actions``: ``runs`` models trained by DP-SGD (with
        per-copy noise multipliers ``sigma`` and clipping norms ``clip`` when given, else ``cfg``'s), half with the
        canary, each copy's randomness from its own generator. Returns ``(eps_lb, tp, fp, accuracy)`` per copy."""
        b, R, h = len(idx), self.runs, self.runs // 2
        canary, threshold = self.decode(actions)
        # every copy's runs in one batch; each copy's randomness from its own generator
        gens = [torch.Generator().manual_seed(int(self.rngs[i].integers(2**62))) for i in idx]
        rep = lambda t: t.repeat_interleave(R, 0)  # noqa: E731
        runs_canary = Canary(rep(canary.kind), rep(canary.x), rep(canary.y), rep(canary.coord), canary.gradient_norm)
        included = torch.tensor(([True] * h + [False] * h) * b)
        if sigma is None:
            theta = train_runs(self.data["x"], self.data["y"], self.K, self.cfg, runs_canary, included, gens)
            scores = canary_scores(theta, runs_canary, self.cfg, self.train_size)
        else:
            sig_t, clip_t = rep(torch.from_numpy(sigma)), rep(torch.from_numpy(clip))
            theta = train_runs(self.data["x"], self.data["y"], self.K, self.cfg, runs_canary, included, gens, sig_t, clip_t)
            scale = self.cfg.lr * sig_t * clip_t * math.sqrt(self.cfg.steps(self.train_size)) / self.cfg.batch_size
            scores = canary_scores(theta, runs_canary, self.cfg, self.train_size, noise_scale=scale)
        scores = scores.numpy().reshape(b, R)
        acc = accuracy(theta, self.data["x_test"], self.data["y_test"]).numpy().reshape(b, R).mean(1)
        guess = scores > threshold[:, None]
        tp, fp = guess[:, :h].sum(1), guess[:, h:].sum(1)
        eps_lb = epsilon_lower_bound(tp, fp, h, h, self.cfg.delta, self.confidence)
        self.last_scores[idx] = scores
        self.last_threshold[idx] = threshold
        q = np.asarray(QUANTILES)
        self.last[idx] = np.concatenate([
            np.quantile(scores[:, :h], q, axis=1).T, np.quantile(scores[:, h:], q, axis=1).T,
            (tp / h)[:, None], (fp / h)[:, None], np.minimum(eps_lb / EPS_SCALE, 1.0)[:, None],
        ], 1).astype(np.float32)
        return eps_lb, tp, fp, acc


class PrivacyAuditCore(CanaryAudit, BatchedCore):
    """## Description

    Auditing differentially private training (Jagielski, Ullman, Oprea 2020, "Auditing
    Differentially Private Machine Learning: How Private is Private SGD?", NeurIPS; Nasr,
    Song, Thakurta, Papernot, Carlini 2021, "Adversary Instantiation: Lower Bounds for
    Differentially Private Machine Learning", IEEE S&P; Nasr et al. 2023, "Tight Auditing
    of Differentially Private Machine Learning", USENIX Security). The trainer runs DP-SGD
    (logistic regression on ``train_size`` embedded digits; :mod:`.dpsgd`) and claims the
    epsilon of opacus' RDP accountant. Each step the auditor designs a canary and an
    attack threshold; the env trains ``runs`` models at once, the first half with the
    canary added to the data, the second half without, scores each final model, and
    guesses "canary in" where the score exceeds the threshold. The true and false
    positives give an empirical epsilon lower bound with Clopper-Pearson intervals; a
    correct DP-SGD never lets it exceed the claimed epsilon (at the stated confidence).

    All copies' runs train in one batched computation.

    ## Action Space

    ``Box(0, 1, (d + 2,), float32)`` with ``d = 64`` pixels. ``canary_space="input"``
    (default): the canary is the image ``a[:d]`` with label ``floor(10 a[d])`` (9 at 1),
    scored by the final model's probability of that label. ``canary_space="gradient"``: a
    Dirac gradient canary (Nasr et al. 2023) on parameter coordinate
    ``floor(P a[d])`` (``P = (d + 1) * 10``; coordinate ``i * 10 + k`` is the weight from
    pixel ``i`` to class ``k``, pixel ``d`` being the bias), scored by how far that
    coordinate fell; ``a[:d]`` is ignored. Either way ``a[d + 1]`` is the threshold on the
    score (in ``[0, 1]``).

    ## Observation Space

    A flat ``Box(0, 1, (27,), float32)`` (see ``obs_slices``): ``claimed_epsilon``
    (``min(eps / 20, 1)``), ``budget_left`` (fraction of the episode's training runs
    left), the last round's ``in_quantiles`` and ``out_quantiles`` (0, 10, ..., 100%
    quantiles of the scores of runs with and without the canary), its ``tpr``,
    ``fpr`` and ``lower_bound`` (``min(eps_lb / 20, 1)``); zeros before the first round.

    ## Rewards

    The round's empirical epsilon lower bound ``eps_lb`` (nats of epsilon; 0 when the attack
    does no better than chance).

    ## Starting State

    No round yet; the canary, the runs' sampling and noise of every round are drawn from
    the copy's generator.

    ## Episode End

    Terminates after ``rounds`` rounds (the budget of ``runs * rounds`` training runs). No
    truncation.

    ## Info

    ``eps_lb`` (the round's lower bound), ``claimed_epsilon``, ``tpr``, ``fpr``, ``tp``,
    ``fp``, ``runs_per_side``, ``confidence``, ``accuracy`` (mean test accuracy of the
    round's models: the trainer's utility), ``exceeds_claim`` (``eps_lb > claimed``: the
    implementation is caught), ``runs_left``.

    ## Arguments

    * ``noise_multiplier`` (1.0), ``max_grad_norm`` (1.0), ``batch_size`` (128, the
      expected Poisson batch), ``epochs`` (8), ``lr`` (2.0), ``train_size`` (256),
      ``delta`` (1e-5): the DP-SGD recipe.
    * ``runs``: models per round, half with the canary (128; even); ``rounds`` (4).
    * ``canary_space``: ``"input"`` or ``"gradient"``; ``gradient_norm``: the Dirac
      canary's norm before clipping (10).
    * ``confidence`` of the Clopper-Pearson bound (0.95).
    * ``clipping_bug``: skip per-record clipping (a broken DP-SGD that still claims its epsilon).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        noise_multiplier: float = 1.0,
        max_grad_norm: float = 1.0,
        batch_size: int = 128,
        epochs: int = 8,
        lr: float = 2.0,
        train_size: int = 256,
        delta: float = 1e-5,
        runs: int = 128,
        rounds: int = 4,
        canary_space: str = "input",
        gradient_norm: float = 10.0,
        confidence: float = 0.95,
        clipping_bug: bool = False,
    ) -> None:
        super().__init__(num_envs, render_mode)
        cfg = checked_dp_config(
            batch_size, epochs, lr, delta,
            noise_multiplier=check_number("noise_multiplier", noise_multiplier, low=0.0, low_inclusive=False),
            max_grad_norm=check_positive("max_grad_norm", max_grad_norm),
            clipping_bug=bool(check_choice("clipping_bug", clipping_bug, (False, True))),
        )
        self.rounds = check_positive("rounds", rounds, integer=True)
        self.single_observation_space = self._init_audit(cfg, train_size, runs, confidence, canary_space, gradient_norm)
        self.claimed_epsilon = theoretical_epsilon(self.cfg, self.train_size)
        self.single_action_space = spaces.Box(0.0, 1.0, (self.d + 2,), dtype=np.float32)
        self.stats = {k: np.zeros(self.num_envs) for k in ("eps_lb", "tpr", "fpr", "tp", "fp", "accuracy")}

    # ------------------------------------------------------------ helpers
    def _obs(self, idx: np.ndarray) -> np.ndarray:
        obs = np.zeros((len(idx), self.single_observation_space.shape[0]), np.float32)
        obs[:, 0] = min(self.claimed_epsilon / EPS_SCALE, 1.0)
        obs[:, 1] = (self.rounds - self.round[idx]) / self.rounds
        obs[:, 2:] = self.last[idx]
        return np.clip(obs, 0.0, 1.0)

    def _info(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        info = {k: v[idx].copy() for k, v in self.stats.items()}
        b = len(idx)
        info["claimed_epsilon"] = np.full(b, self.claimed_epsilon)
        info["exceeds_claim"] = self.stats["eps_lb"][idx] > self.claimed_epsilon
        info["runs_per_side"] = np.full(b, self.runs // 2)
        info["confidence"] = np.full(b, self.confidence)
        info["runs_left"] = (self.rounds - self.round[idx]) * self.runs
        return info

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        if options:
            raise ValueError(f"options={options!r}: PrivacyAudit-v0 takes no reset options")
        self._reset_audit(idx)
        return self._obs(idx), self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        b, h = len(idx), self.runs // 2
        eps_lb, tp, fp, acc = self._audit(idx, actions)
        self.round[idx] += 1
        for k, v in (("eps_lb", eps_lb), ("tpr", tp / h), ("fpr", fp / h), ("tp", tp), ("fp", fp), ("accuracy", acc)):
            self.stats[k][idx] = v
        terminated = self.round[idx] >= self.rounds
        return self._obs(idx), eps_lb.astype(np.float64), terminated, np.zeros(b, bool), self._info(idx)

    def render_ansi(self, i: int) -> str:
        s = self.stats
        return (f"DP-SGD (sigma {self.cfg.noise_multiplier}, clip {self.cfg.max_grad_norm}{', CLIPPING BUG' if self.cfg.clipping_bug else ''}) "
                f"claims eps {self.claimed_epsilon:.2f}; round {self.round[i]}/{self.rounds}: TPR {s['tpr'][i]:.2f} "
                f"FPR {s['fpr'][i]:.2f} -> eps_lb {s['eps_lb'][i]:.2f} ({self.confidence:.0%} Clopper-Pearson)")

    def render_rgb(self, i: int) -> np.ndarray:
        """The last round's canary scores, runs with the canary against runs without, the threshold, and the bound it gives."""
        from deploy_envs.core.rendering import sketch

        sk = sketch(self, size=(560, 260), grid=(1, 2), width_ratios=(1.7, 1), margins={"left": 0.07, "wspace": 0.3, "bottom": 0.17})
        s = self.stats
        bug = ", CLIPPING BUG" if self.cfg.clipping_bug else ""
        ax_h, ax_b = sk.begin(f"PrivacyAudit: DP-SGD (sigma {self.cfg.noise_multiplier}, clip {self.cfg.max_grad_norm}{bug}), "
                              f"round {self.round[i]}/{self.rounds}: TPR {s['tpr'][i]:.2f}, FPR {s['fpr'][i]:.2f}", fontsize=8)
        draw_audit(ax_h, ax_b, self.last_scores[i], self.last_threshold[i], s["eps_lb"][i], self.claimed_epsilon, self.confidence, self.round[i] > 0)
        return sk.finish()


def draw_audit(ax_h, ax_b, scores: np.ndarray, threshold: float, eps_lb: float, claimed: float, confidence: float, played: bool) -> None:
    """An audit round on two axes: the canary scores of the runs with the canary (first half of ``scores``) and without
    (second half) with the threshold; and the epsilon lower bound against the claimed epsilon."""
    from deploy_envs.core.rendering import PALETTE

    h = len(scores) // 2
    if played:
        ends = [scores.min(), scores.max()] + ([threshold] if np.isfinite(threshold) else [])
        lo, hi = float(min(ends)), float(max(ends))
        bins = np.linspace(lo, hi + 1e-9 if hi > lo else lo + 1.0, 16)
        for part, name, colour in ((scores[:h], "with canary", PALETTE["red"]), (scores[h:], "without", PALETTE["blue"])):
            counts, _ = np.histogram(part, bins)
            ax_h.stairs(counts, bins, color=colour, label=f"{name} ({h} runs)", lw=1.5)
        if np.isfinite(threshold):
            ax_h.axvline(threshold, color=PALETTE["green"], lw=2, label=f"threshold {threshold:.2f}")
        ax_h.legend(fontsize=6, loc="upper left")
    else:
        ax_h.text(0.5, 0.5, "no round yet", ha="center", va="center", transform=ax_h.transAxes, fontsize=9)
    ax_h.set_xlabel("canary score", fontsize=8)
    ax_h.set_title("scores of the last round's runs", fontsize=8)
    ax_b.bar([0, 1], [eps_lb, claimed], color=[PALETTE["red"] if eps_lb > claimed else PALETTE["orange"], PALETTE["grey"]])
    ax_b.set_xticks([0, 1], [f"lower bound\n({confidence:.0%})", "claimed"], fontsize=7)
    ax_b.set_title("epsilon", fontsize=8)
    for ax in (ax_h, ax_b):
        ax.tick_params(labelsize=7)

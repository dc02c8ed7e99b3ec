"""Reference auditors for ``deploy_envs/PrivacyAudit-v0``: four canary designs and one threshold rule.

| name | canary (Jagielski et al. 2020; Nasr et al. 2021, 2023) |
|---|---|
| ``natural_canary`` | a natural test image with its true label: what an average-case membership test measures |
| ``mislabeled_canary`` | the same image with a wrong label: its gradient stays large, so clipping binds every time it is sampled |
| ``crafted_canary`` | a worst-case input: an image lit only on the pixels that are 0 in every training image, labelled 0, so no other record's gradient moves the weights it moves |
| ``gradient_canary`` | a Dirac gradient canary (Nasr et al. 2023) on the weight from an always-0 pixel to class 0: the clipped gradient lands on one coordinate that only noise touches (needs ``canary_space="gradient"``) |

Threshold: the first round guesses 0.5; later rounds choose, from the previous round's
score quantiles (seen in the observation), the threshold that would have given the best
lower bound there. The threshold is never fitted on the runs it is tested on, so the bound
stays a valid lower bound.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import Agent, register_baseline
from deploy_envs.topics.privacy_audit.dpsgd import epsilon_lower_bound

ENV_ID = "deploy_envs/PrivacyAudit-v0"
NATURAL_INDEX = 0
"""Index of the natural canary in the digits test split."""


def choose_threshold(in_q: np.ndarray, out_q: np.ndarray, n_side: int, delta: float, confidence: float) -> float:
    """The threshold among the out-scores' quantiles (just above each) with the best bound on last round's quantiles.

    TPR and FPR at a threshold are read off the piecewise-linear quantile functions of the
    in- and out-scores.
    """
    levels = np.linspace(0.0, 1.0, len(in_q))
    best, best_t = -1.0, 0.5
    for t in np.unique(np.clip(np.r_[out_q, (out_q[1:] + out_q[:-1]) / 2, in_q] + 1e-9, 0.0, 1.0)):
        tpr = 1.0 - float(np.interp(t, in_q, levels, left=0.0, right=1.0))
        fpr = 1.0 - float(np.interp(t, out_q, levels, left=0.0, right=1.0))
        eps = float(epsilon_lower_bound(np.array([round(tpr * n_side)]), np.array([round(fpr * n_side)]), n_side, n_side, delta, confidence)[0])
        if eps > best:
            best, best_t = eps, float(t)
    return best_t


class CanaryAuditor(Agent):
    """Base: a fixed canary design, the threshold from the previous round."""

    canary_space = "input"

    def setup(self, env: Any) -> None:
        core = getattr(env.unwrapped, "core", None)
        if core is None or not hasattr(core, "decode") or not hasattr(core, "data"):
            raise ValueError(f"env={env!r} is not a {ENV_ID} env")
        self.bind(core)

    def bind(self, core: Any) -> None:
        """Design the canary for ``core`` (``PrivacyAudit-v0``'s, or ``PrivacyGame-v0``'s auditor seat, which observes the same)."""
        if core.canary_space != self.canary_space:
            raise ValueError(f"{type(self).__name__} needs canary_space={self.canary_space!r}; the env has {core.canary_space!r}")
        self.core = core
        self.sl = core.obs_slices
        self.n_side = core.runs // 2
        self.design = self.canary(core).astype(np.float32)

    def canary(self, core: Any) -> np.ndarray:
        """The first ``d + 1`` entries of the action."""
        raise NotImplementedError

    def act(self, obs, episode_start):
        obs = np.asarray(obs)
        out = np.zeros((len(obs), self.core.d + 2), np.float32)
        out[:, :-1] = self.design
        for i in range(len(obs)):
            in_q, out_q = obs[i, self.sl["in_quantiles"]], obs[i, self.sl["out_quantiles"]]
            if episode_start[i] or not (in_q.any() or out_q.any()):
                out[i, -1] = 0.5
            else:
                out[i, -1] = choose_threshold(in_q.astype(float), out_q.astype(float), self.n_side, self.core.cfg.delta, self.core.confidence)
        return out


def _natural(core: Any) -> tuple[np.ndarray, int]:
    x = core.data["x_test"][NATURAL_INDEX].numpy()
    return x, int(core.data["y_test"][NATURAL_INDEX])


def _label_entry(label: int, K: int) -> float:
    return (label + 0.5) / K


def dead_pixels(core: Any) -> np.ndarray:
    """Pixels that are 0 in every training image of the auditor's data."""
    return np.flatnonzero(core.data["x"].numpy().max(0) == 0)


class NaturalCanary(CanaryAuditor):
    def canary(self, core):
        x, y = _natural(core)
        return np.r_[x, _label_entry(y, core.K)]


class MislabeledCanary(CanaryAuditor):
    def canary(self, core):
        x, y = _natural(core)
        return np.r_[x, _label_entry((y + 5) % core.K, core.K)]


class CraftedCanary(CanaryAuditor):
    def canary(self, core):
        x = np.zeros(core.d)
        dead = dead_pixels(core)
        x[dead if len(dead) else np.arange(core.d)] = 1.0
        return np.r_[x, _label_entry(0, core.K)]


class GradientCanary(CanaryAuditor):
    canary_space = "gradient"

    def canary(self, core):
        dead = dead_pixels(core)
        pixel = int(dead[0]) if len(dead) else core.d  # else the bias row
        coord = pixel * core.K + 0
        return np.r_[np.zeros(core.d), (coord + 0.5) / core.P]


register_baseline("natural_canary", NaturalCanary, envs=(ENV_ID,), summary="audit with a natural test point and its true label")
register_baseline("mislabeled_canary", MislabeledCanary, envs=(ENV_ID,), summary="audit with a mislabeled test point (Jagielski et al. 2020)")
register_baseline("crafted_canary", CraftedCanary, envs=(ENV_ID,), summary="audit with a worst-case input on pixels no training image uses (Nasr et al. 2021)")
register_baseline("gradient_canary", GradientCanary, envs=(ENV_ID,), summary="audit with a Dirac gradient canary (Nasr et al. 2023)")

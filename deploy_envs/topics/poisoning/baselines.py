"""Reference poisoners for ``deploy_envs/Poisoning-v0``.

They act only through the env's API: in :meth:`~PoisonAgent.setup` they read the
env's configuration and the attacker's knowledge (``core.attacker_data()``, the
clean training data) from ``env.unwrapped.core``; the victim's parameters come
from the ``params`` part of the observation (``white_box`` threat model). None of
them touches the test set or the victim object.

| name | threat model | algorithm |
|---|---|---|
| ``random_label_flip`` | any | a random clean training point with a random wrong label |
| ``boundary_label_flip`` | ``white_box`` | the clean point nearest the current decision boundary (smallest margin), relabelled to its runner-up class |
| ``max_loss_poison`` | ``white_box`` | Steinhardt, Koh & Liang 2017 (Algorithm 1, the online attack): each point maximises the victim's current loss over the feasible set |
| ``target_copy`` | any, ``targeted`` goal | copies of the target points labelled as the target class |

``max_loss_poison`` is the gradient-based poisoner for the convex victims: for a
linear model the loss of ``(x, y)`` grows along ``w_j - w_y`` for the competing
class ``j``, so over the box ``[0, 1]^d`` its maximiser for a pair ``(y, j)`` is
the vertex ``1[w_j - w_y > 0]``; over the sphere defence's feasible set
(``feasible="sphere"``, a defence-aware attacker) it is the step of the class
radius from the class centroid along that direction, clipped to the box (which
stays inside the sphere because the centroid is in the box). The agent
evaluates the victim's loss at the ``K (K - 1)`` candidates and injects the best.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice, check_number
from deploy_envs.topics.poisoning.victims import per_example_loss

ENV_ID = "deploy_envs/Poisoning-v0"


class PoisonAgent(Agent):
    """Common setup: configuration, attacker data, observation layout."""

    needs_white_box = False

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        core = env.unwrapped.core
        if self.needs_white_box and core.threat_model != "white_box":
            raise ValueError(f"{type(self).__name__} reads the victim's parameters; it needs threat_model='white_box' (got {core.threat_model!r})")
        if self.needs_white_box and core.victim_kind == "mlp":
            raise ValueError(f"{type(self).__name__} reads a linear victim's parameters; victim='mlp' is not supported (use 'logistic' or 'svm')")
        self.core = core
        self.x, self.y = core.attacker_data()
        self.K, self.d, self.p = core.K, core.d, core.points_per_step
        self.slices = core.obs_slices
        self.radius = core.victims.radius
        self.kind = core.victim_kind
        self.rng = np.random.default_rng(self.seed)

    def params(self, obs: np.ndarray) -> np.ndarray:
        """The victims' parameters ``(B, d + 1, K)`` from the observation."""
        return obs[:, self.slices["params"]].reshape(len(obs), self.d + 1, self.K).astype(np.float64) * self.radius


class RandomLabelFlip(PoisonAgent):
    """A random clean training point with a label drawn uniformly from the other classes."""

    def act(self, obs, episode_start):
        B = len(obs)
        i = self.rng.integers(len(self.y), size=(B, self.p))
        labels = (self.y[i] + 1 + self.rng.integers(self.K - 1, size=(B, self.p))) % self.K
        return self.core.encode(self.x[i], labels)


class BoundaryLabelFlip(PoisonAgent):
    """Flip the label of the clean point of smallest margin under the current victim (each point at most once)."""

    needs_white_box = True

    def setup(self, env):
        super().setup(env)
        self.used = np.zeros((env.num_envs, len(self.y)), dtype=bool)

    def act(self, obs, episode_start):
        self.used[episode_start] = False
        theta = self.params(obs)
        xa = np.concatenate([self.x, np.ones((len(self.x), 1))], 1)
        s = np.einsum("nd,bdk->bnk", xa, theta)
        rows = np.arange(len(self.y))
        true = s[:, rows, self.y]
        s[:, rows, self.y] = -np.inf
        runner = s.argmax(2)
        margin = true - s.max(2)
        margin[self.used] = np.inf
        pick = np.argsort(margin, axis=1)[:, : self.p]  # (B, p)
        np.put_along_axis(self.used, pick, True, axis=1)
        labels = np.take_along_axis(runner, pick, axis=1)
        return self.core.encode(self.x[pick], labels)


class MaxLossPoison(PoisonAgent):
    """Steinhardt et al. 2017's online attack: the feasible point of largest loss under the current victim."""

    needs_white_box = True

    def __init__(self, feasible: str = "box", quantile: float = 0.95, seed: int | None = None) -> None:
        super().__init__(seed)
        self.feasible = check_choice("feasible", feasible, ("box", "sphere"))
        self.quantile = check_number("quantile", quantile, low=0.0, high=1.0, low_inclusive=False)

    def setup(self, env):
        super().setup(env)
        self.mu = np.stack([self.x[self.y == c].mean(0) for c in range(self.K)])
        self.r = np.array([np.quantile(np.linalg.norm(self.x[self.y == c] - self.mu[c], axis=1), self.quantile) for c in range(self.K)])
        self.r *= 0.999  # stay strictly inside the defender's sphere

    def act(self, obs, episode_start):
        theta = self.params(obs)
        W, b = theta[:, : self.d], theta[:, self.d]  # (B, d, K), (B, K)
        A = W[:, :, None, :] - W[:, :, :, None]  # A[b, :, y, j] = w_j - w_y
        A = A.transpose(0, 2, 3, 1)  # (B, y, j, d)
        if self.feasible == "box":
            X = (A > 0).astype(np.float64)
        else:
            norm = np.maximum(np.linalg.norm(A, axis=-1, keepdims=True), 1e-12)
            X = np.clip(self.mu[None, :, None, :] + self.r[None, :, None, None] * A / norm, 0.0, 1.0)
        S = np.einsum("byjd,bdk->byjk", X, W) + b[:, None, None, :]
        B, K = len(obs), self.K
        labels = np.broadcast_to(np.arange(K)[None, :, None], (B, K, K))
        loss = per_example_loss(self.kind, torch.as_tensor(S), torch.as_tensor(np.ascontiguousarray(labels))).numpy()
        loss[:, np.arange(K), np.arange(K)] = -np.inf
        flat = loss.reshape(B, -1).argmax(1)
        yb, jb = np.divmod(flat, K)
        x = X[np.arange(B), yb, jb]  # (B, d)
        pts = np.repeat(x[:, None], self.p, 1)
        return self.core.encode(pts, np.repeat(yb[:, None], self.p, 1))


class TargetCopy(PoisonAgent):
    """Targeted goal: inject the target points themselves, labelled as the target class, in turn."""

    def setup(self, env):
        super().setup(env)
        if not self.core.targeted:
            raise ValueError("target_copy needs goal='targeted'")
        self.T = self.core.num_targets
        self.count = np.zeros(env.num_envs, dtype=np.int64)

    def act(self, obs, episode_start):
        self.count[episode_start] = 0
        B = len(obs)
        targets = obs[:, self.slices["targets"]].reshape(B, self.T, self.d)
        cls = obs[:, self.slices["target_class"]].argmax(1)
        j = (self.count[:, None] + np.arange(self.p)[None]) % self.T
        self.count += self.p
        return self.core.encode(np.take_along_axis(targets, j[..., None], 1), np.repeat(cls[:, None], self.p, 1))


register_baseline("random_label_flip", RandomLabelFlip, envs=(ENV_ID,), summary="random clean point, random wrong label (any threat model)")
register_baseline("boundary_label_flip", BoundaryLabelFlip, envs=(ENV_ID,), summary="clean point nearest the decision boundary, relabelled to the runner-up class (white-box)")
register_baseline(
    "max_loss_poison", MaxLossPoison, envs=(ENV_ID,),
    summary="feasible point of maximal victim loss, box or defence-aware sphere (white-box; Steinhardt et al. 2017)",
)
register_baseline("target_copy", TargetCopy, envs=(ENV_ID,), summary="the target points labelled as the target class (targeted goal)")

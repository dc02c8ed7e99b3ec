"""Reference membership-inference attackers for ``deploy_envs/MembershipInference-v0``.

Both attacks are black box: they read the env's configuration (observation layout, the
API's output granularity, the victim's *training recipe*) and the attacker's own data
(``core.pool``: digits records disjoint from the victim's members and from the env's
non-members) in :meth:`setup`, and otherwise see only the observations (the API's answer
and the candidate's label). Neither touches the victim's weights or member set. Both
train shadow models: copies of the victim's recipe on the attacker's data, for which the
attacker knows who is a member (Shokri et al. 2017).

| name | algorithm |
|---|---|
| ``loss_threshold`` | Yeom et al. 2018 ("Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF): "member" iff the loss ``-log p_y`` on the record is below a threshold; the threshold is the one that maximizes TPR - FPR on a shadow model's members and non-members from the attacker's pool, never on the victim's members |
| ``shadow_models`` | Shokri et al. 2017 ("Membership Inference Attacks Against Machine Learning Models", IEEE S&P), simplified: ``n_shadows`` shadow models, each trained on a random ``MEMBER_SIZE``-record half of a fresh split of the pool (shadow training sets overlap one another, as Shokri et al. allow, and are disjoint from the victim's data), and one attack classifier (gradient-boosted trees; Shokri et al. use one network per class) on the shadows' answers for their members and non-members: sorted probabilities, log-loss, correctness and the label |

Scores: the loss attack answers ``tanh((log t - log loss) / 4)`` (> 0 below the threshold,
monotone in the loss so TPR at low FPR ranks by it); the shadow attack ``2 P(member) - 1``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_positive
from deploy_envs.models.membership_victims import MEMBER_SIZE, train_victim

ENV_ID = "deploy_envs/MembershipInference-v0"


def _core(env: Any):
    core = getattr(env.unwrapped, "core", None)
    needed = ("obs_slices", "pool", "recipe", "api", "K")
    if core is None or any(not hasattr(core, a) for a in needed):
        raise ValueError(f"env={env!r} is not a {ENV_ID} env: its unwrapped.core lacks {', '.join(needed)}")
    return core


def log_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log(-log p_y)`` per row, accurate for ``p_y`` near 1 (``-log p_y ~ sum of the other probabilities``)."""
    probs = np.asarray(probs, np.float64)
    py = probs[np.arange(len(labels)), labels]
    others = probs.sum(1) - py
    loss = np.where(py < 0.5, -np.log(np.clip(py, 1e-12, 1.0)), -np.log1p(-np.clip(others, 0.0, 0.5)))
    return np.log(np.maximum(loss, 0.0) + 1e-30)


def features(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The shadow attack's features of answers: sorted probabilities, log-loss, correctness, one-hot label."""
    probs = np.asarray(probs, np.float64)
    K = probs.shape[1]
    return np.concatenate(
        [-np.sort(-probs, 1), log_loss(probs, labels)[:, None], (probs.argmax(1) == labels)[:, None], np.eye(K)[labels]], 1
    )


class ShadowAttack(Agent):
    """Base: trains shadow models like the victim on the attacker's pool and answers as the API would."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        core = _core(env)
        self.slices, self.K = dict(core.obs_slices), int(core.K)
        self.recipe, self.api = core.recipe, core.api
        self.pool_x, self.pool_y = core.pool
        if len(self.pool_y) < 2 * MEMBER_SIZE:
            raise ValueError(f"the attacker's pool has {len(self.pool_y)} records; shadow models need {2 * MEMBER_SIZE}")
        self.rng = np.random.default_rng(self.seed)
        self.binary = not hasattr(env.single_action_space, "low")  # Discrete(2): guess member iff score > 0

    def shadow(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train shadow ``k``; return answers ``(2M, K)`` on its members then non-members, labels and membership."""
        perm = self.rng.permutation(len(self.pool_y))
        ins, outs = perm[:MEMBER_SIZE], perm[MEMBER_SIZE : 2 * MEMBER_SIZE]
        model = train_victim(replace(self.recipe, seed=1000 * (self.seed + 1) + k), self.pool_x[ins], self.pool_y[ins], self.K)
        rows = np.concatenate([ins, outs])
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(self.pool_x[rows])).double(), 1).numpy()
        return self.granulate(probs), self.pool_y[rows], np.r_[np.ones(len(ins), bool), np.zeros(len(outs), bool)]

    def granulate(self, probs: np.ndarray) -> np.ndarray:
        """What the API would answer (its output granularity; its noise is not simulated), as float32 like the observation."""
        api, K = self.api, self.K
        if api.output == "label":
            probs = np.eye(K)[probs.argmax(1)]
        elif api.output == "top_k" and api.top_k < K:
            kth = -np.partition(-probs, api.top_k - 1, axis=1)[:, api.top_k - 1 : api.top_k]
            probs = np.where(probs >= kth, probs, 0.0)
        if api.output == "rounded" or api.defense == "rounding":
            probs = np.round(probs, api.decimals)
        return probs.astype(np.float32)

    def answer(self, score: np.ndarray) -> np.ndarray:
        return (score > 0).astype(np.int64) if self.binary else score.astype(np.float32)[:, None]

    def split_obs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = np.asarray(obs)
        return obs[:, self.slices["answer"]], obs[:, self.slices["label"]].argmax(1)


class LossThreshold(ShadowAttack):
    """Yeom et al.'s loss-threshold attack with the threshold calibrated on one shadow model (see the module docstring)."""

    def setup(self, env: Any) -> None:
        super().setup(env)
        probs, labels, member = self.shadow(0)
        ll = log_loss(probs, labels)
        cand = np.unique(ll)
        cand = np.r_[cand[0] - 1.0, (cand[1:] + cand[:-1]) / 2, cand[-1] + 1.0]
        below = ll[None, :] < cand[:, None]
        adv = below[:, member].mean(1) - below[:, ~member].mean(1)
        self.log_threshold = float(cand[int(np.argmax(adv))])
        self.calibration_advantage = float(adv.max())

    def act(self, obs, episode_start):
        probs, labels = self.split_obs(obs)
        return self.answer(np.tanh((self.log_threshold - log_loss(probs, labels)) / 4.0))


class ShadowModels(ShadowAttack):
    """Shokri et al.'s shadow-model attack, simplified (see the module docstring)."""

    def __init__(self, seed: int = 0, n_shadows: int = 4) -> None:
        super().__init__(seed)
        self.n_shadows = check_positive("n_shadows", n_shadows, integer=True)

    def setup(self, env: Any) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        super().setup(env)
        feats, member = [], []
        for k in range(self.n_shadows):
            probs, labels, m = self.shadow(k)
            feats.append(features(probs, labels))
            member.append(m)
        self.classifier = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, random_state=self.seed)
        self.classifier.fit(np.concatenate(feats), np.concatenate(member))

    def act(self, obs, episode_start):
        probs, labels = self.split_obs(obs)
        p = self.classifier.predict_proba(features(probs, labels))[:, 1]
        return self.answer(2.0 * p - 1.0)


register_baseline("loss_threshold", LossThreshold, envs=(ENV_ID,), summary="loss below a shadow-calibrated threshold means member (Yeom et al. 2018)")
register_baseline("shadow_models", ShadowModels, envs=(ENV_ID,), summary="attack classifier trained on shadow models' outputs (Shokri et al. 2017, simplified)")

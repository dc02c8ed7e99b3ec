"""What the query attacks of the evasion topic share: the victim, its attack pool and the query budget.

* :class:`VictimQueries` (a mixin of any core, env or game): the victim classifier, the pool of
  inputs it classifies correctly, and each copy's draw of an input from that pool. The
  ``AttackDefense-v0`` game uses it as it is.
* :class:`QueryAttackCore` (a :class:`~deploy_envs.core.batched.BatchedCore`): an attacker that
  queries the victim on one input per episode, within a query budget: the shared constructor
  arguments (victim, targeting, budget, reward weights), the episode start (the input, and the
  target when targeted), the bookkeeping of a query (prediction, margin, success), the
  observation parts every such env has, the common ``info`` and the reward. ``Evasion-v0`` (an
  Lp-bounded perturbation) and ``SpatialEvasion-v0`` (a rotation and a translation) add only
  their threat model: their action, how it moves the input, and their own observation parts.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.validation import Option, check_choice, check_number, check_positive, reward_weight_arguments
from deploy_envs.topics.evasion.victim import Victim, margins_np


class VictimQueries:
    """The victim and its attack pool, for cores that query a classifier (a mixin)."""

    victim: Victim
    pool: np.ndarray
    rngs: list[np.random.Generator]

    def _load_victim(self, victim: Any, *, dataset: str, device: str, split: str = "test") -> None:
        """Build the victim and the pool of ``split`` inputs it classifies correctly; set ``K``, ``d``,
        ``_eye`` and ``_flat_images``."""
        self.victim = Victim.build(victim, dataset=dataset, device=device, split=split)
        self.K = self.victim.num_classes
        self.d = int(np.prod(self.victim.image_shape))
        self.pool = self.victim.correct_indices()
        if len(self.pool) == 0:
            raise ValueError(f"victim {self.victim.name!r} classifies no {split} input correctly; nothing to attack")
        self._eye = np.eye(self.K, dtype=np.float32)
        self._flat_images = self.victim.images.reshape(len(self.victim.labels), self.d)

    def _draw_samples(self, idx: np.ndarray, chosen: np.ndarray | None = None) -> np.ndarray:
        """The pool inputs of copies ``idx``: ``chosen`` when given, else one draw from each copy's own generator."""
        if chosen is not None:
            return chosen.astype(np.int64)
        n_pool, rngs = len(self.pool), self.rngs
        return self.pool[[rngs[i].integers(n_pool) for i in idx.tolist()]]


class QueryAttackCore(VictimQueries, BatchedCore):
    """Base of the single-attacker query attacks (``Evasion-v0``, ``SpatialEvasion-v0``).

    A subclass sets ``THREAT_MODELS``, checks its own arguments, calls ``super().__init__``
    with the shared ones (forwarded as ``**kwargs``), builds its observation space from
    :meth:`attack_parts`, starts episodes with :meth:`start_episodes`, moves the input in
    ``step_indices``, and answers each query with :meth:`query`, :meth:`write_attack_obs`,
    :meth:`attack_info` and :meth:`outcome`.
    """

    THREAT_MODELS: tuple[str, ...] = ("scores", "decision")

    #: reward weights stay within a range where rewards are finite floats
    arguments = reward_weight_arguments("reward_scale", "success_bonus", costs=("query_cost",))

    reset_options = {
        "index": Option(int, "the test input of the new episode", per_copy=True, allowed=lambda core: core.pool,
                        allowed_text="indices in env.core.pool (inputs the victim classifies correctly)"),
    }

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
        max_queries: int = 20,
        reward_scale: float = 1.0,
        success_bonus: float = 5.0,
        query_cost: float = 0.0,
        dense_reward: bool | None = None,
        allow_score_leak: bool = False,
        split: str = "test",
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.threat_model = check_choice("threat_model", threat_model, self.THREAT_MODELS)
        self.targeted = bool(check_choice("targeted", targeted, (True, False)))
        self.max_queries = check_positive("max_queries", max_queries, integer=True)
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
        self._load_victim(victim, dataset=dataset, device=device, split=split)
        self.target_class = None
        if target_class is not None:
            if not targeted:
                raise ValueError(f"target_class={target_class!r} needs targeted=True")
            self.target_class = check_number("target_class", target_class, low=0, high=self.K - 1, integer=True)
            self.pool = self.pool[self.victim.labels[self.pool] != self.target_class]
            if len(self.pool) == 0:
                raise ValueError(f"victim {self.victim.name!r} classifies no {split} input correctly; nothing to attack")

        n, d = self.num_envs, self.d
        self.x0 = np.zeros((n, d), np.float32)
        self.true_label = np.zeros(n, np.int64)
        self.target = np.full(n, -1, np.int64)
        self.sample_index = np.zeros(n, np.int64)
        self.queries = np.zeros(n, np.int64)
        self.margin = np.zeros(n, np.float32)
        self.pred = np.zeros(n, np.int64)
        self._all = np.arange(n)

    # ------------------------------------------------------------ episodes
    def attack_parts(self, before: tuple = (), after: tuple = ()) -> list[tuple]:
        """The :func:`~deploy_envs.core.spaces.flat_box` parts of the observation: ``x``, the subclass's
        parts ``before`` the feedback, ``feedback``, ``label``, its parts ``after`` them, and ``budget``."""
        d, K = self.d, self.K
        return [("x", d, 0.0, 1.0), *before, ("feedback", K, 0.0, 1.0), ("label", K, 0.0, 1.0), *after, ("budget", 1, 0.0, 1.0)]

    def start_episodes(self, idx: np.ndarray, options: dict | None = None) -> np.ndarray:
        """Draw the new episodes of copies ``idx`` (input, and target when targeted; no query); return their clean inputs.

        Each copy draws from its own generator: the input first, then the target.
        """
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
        ks = self._draw_samples(idx, chosen)
        draw_target = self.targeted and self.target_class is None
        if draw_target:  # drawn after the input, from the same per-copy generator
            ts = np.array([self.rngs[i].integers(self.K - 1) for i in idx.tolist()], dtype=np.int64)
        self.sample_index[idx] = ks
        true_label = self.victim.labels[ks]
        self.true_label[idx] = true_label
        if self.targeted:
            self.target[idx] = self.target_class if self.target_class is not None else ts + (ts >= true_label)
        x0 = self._flat_images[ks]
        self.x0[idx] = x0
        self.queries[idx] = 0
        return x0

    def attack_labels(self, idx) -> np.ndarray:
        return self.target[idx] if self.targeted else self.true_label[idx]

    # ------------------------------------------------------------- queries
    def query(self, idx: np.ndarray, z: np.ndarray, labels: np.ndarray):
        """Record the victim's answer ``z`` (logits, ``(k, K)``) on copies ``idx`` attacked towards
        ``labels``: their prediction and margin. Returns ``(pred, margin, success)``; success is
        the prediction equal to the target (targeted) or other than the true label."""
        pred = z.argmax(1)
        margin = margins_np(z, labels, self.targeted, rows=self._all[: len(idx)])
        if len(idx) == self.num_envs:  # idx is then all copies in order: plain writes instead of scatters
            self.margin[:] = margin
            self.pred[:] = pred
        else:
            self.margin[idx] = margin
            self.pred[idx] = pred
        return pred, margin, (pred == labels) if self.targeted else (pred != labels)

    def write_attack_obs(self, obs: np.ndarray, x_adv: np.ndarray, feedback_pred: np.ndarray | None, labels: np.ndarray, queries: np.ndarray) -> None:
        """Write the shared parts of the observation rows ``obs``: ``x``, ``label``, ``budget``, and
        under ``decision`` the one-hot ``feedback`` of ``feedback_pred`` (a score feedback is the subclass's)."""
        s = self.obs_slices
        obs[:, s["x"]] = x_adv
        if self.threat_model == "decision":
            obs[:, s["feedback"]] = self._eye[feedback_pred]
        obs[:, s["label"]] = self._eye[labels]
        obs[:, s["budget"].start] = 1.0 - queries / self.max_queries

    def attack_info(self, success, queries, true_label, pred, sample_index, labels, margin, **extra) -> dict[str, np.ndarray]:
        """The info every query attack gives, then the subclass's ``extra`` keys, ``target_label`` when
        targeted and ``margin`` except under ``decision`` (where it would leak the scores). The arrays
        must be fresh: none may alias the core's state."""
        info = {"success": success, "queries": queries, "true_label": true_label, "predicted_label": pred, "sample_index": sample_index, **extra}
        if self.targeted:
            info["target_label"] = labels
        if self.threat_model != "decision":
            info["margin"] = margin
        return info

    def outcome(self, idx, prev_margin: np.ndarray, obs: np.ndarray, info: dict[str, np.ndarray]):
        """Step's return from the query's observation and info: ``success_bonus`` on success, minus
        ``query_cost``, plus the dense margin progress; terminated on success or a spent budget."""
        success = info["success"]
        reward = self.success_bonus * success - self.query_cost
        if self.dense_reward:
            reward = reward + self.reward_scale * (prev_margin - self.margin[idx])
        terminated = success | (info["queries"] >= self.max_queries)
        return obs, np.asarray(reward, dtype=np.float64), terminated, np.zeros(len(idx), bool), info

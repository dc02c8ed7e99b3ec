"""``deploy_envs/AttackDefense-v0``: an evasion attacker against a defender choosing input defenses.

Build it with :func:`parallel_env` (or ``deploy_envs.make_game("deploy_envs/AttackDefense-v0")``).
The game is written once as :class:`AttackDefenseCore`, a batched core whose state
has a leading batch dimension (one forward pass per defense for all copies); the
PettingZoo :class:`AttackDefenseParallelEnv` is that core at batch size 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.utils import seeding

from deploy_envs.core.batched import BatchedCore, validate_batch
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.core.views import ParallelGameView
from deploy_envs.topics.evasion.victim import Victim

AGENTS = ("attacker", "defender")

#: every defense the defender may be offered, in the default order of its action space
DEFENSES = ("none", "quantization", "denoising", "smoothing", "robust_model")
DENOISE_FILTERS = ("median", "mean")

#: seed of the fixed noise used to precompute the clean accuracy of randomized smoothing
CLEAN_ACCURACY_SEED = 0


class AttackDefenseCore(BatchedCore):
    """## Description

    A repeated simultaneous-move game between an evasion attacker and a defender
    who guards a fixed classifier (the ``"standard"`` zoo model by default). Each
    round a fresh test input that the standard model classifies correctly is drawn.
    The attacker perturbs it inside an linf ball of radius ``epsilon`` (one shot, as
    FGSM: Goodfellow et al. 2015) while, at the same time and without seeing the
    input, the defender picks one of several input-processing or model defenses:

    | index (default order) | name | what the defended classifier does |
    |---|---|---|
    | 0 | ``"none"`` | the standard model on ``x + delta`` |
    | 1 | ``"quantization"`` | the standard model on ``x + delta`` rounded to ``quant_levels`` grey levels (feature squeezing, Xu et al. 2018) |
    | 2 | ``"denoising"`` | the standard model on a ``denoise_size`` x ``denoise_size`` median (or mean) filter of ``x + delta`` |
    | 3 | ``"smoothing"`` | randomized smoothing (Cohen et al. 2019): majority vote of the standard model over ``n_samples`` copies of ``x + delta`` with Gaussian noise of std ``smoothing_sigma`` (no abstention; ties go to the lower class) |
    | 4 | ``"robust_model"`` | the adversarially trained model (``robust_victim``, Madry et al. 2018) on ``x + delta`` |

    The victim is *fooled* when the defended classifier's prediction differs from
    the true label. Every defense but ``"none"`` may cost clean accuracy; that cost
    is measured once, at construction, on the whole clean test split, and charged
    to the defender.

    ## Agents

    ``"attacker"`` and ``"defender"``; both act every round.

    ## Action Spaces

    * attacker: ``Box(-1, 1, (d,), float32)`` with ``d`` the number of input pixels:
      the perturbation divided by ``epsilon`` (``delta = epsilon * action``, then
      ``x + delta`` is clipped to the pixel range [0, 1]). FGSM is
      ``action = sign(gradient)``, which the white-box observation contains.
    * defender: ``Discrete(len(defenses))``, an index into ``defenses``.

    ## Observation Spaces

    Flat ``Box`` es of float32 (``core.obs_slices[agent]`` names the parts).

    attacker:

    | part | size | range | content |
    |---|---|---|---|
    | ``x`` | d | [0, 1] | the clean input of this round |
    | ``scores`` | K | [0, 1] | the standard model's softmax on it |
    | ``gradient`` | d | [-1, 1] | ``attacker_white_box`` only: sign of the input gradient of the standard model's cross-entropy at the true label |
    | ``previous_defense`` | D | [0, 1] | one-hot of the defender's defense last round (all zeros in round 0) |
    | ``round`` | 1 | [0, 1] | rounds played / ``rounds`` |

    defender:

    | part | size | range | content |
    |---|---|---|---|
    | ``previous_defense`` | D | [0, 1] | one-hot of its own defense last round (all zeros in round 0) |
    | ``last_fooled`` | 1 | [0, 1] | 1 if the victim was fooled last round |
    | ``last_perturbation`` | 1 | [0, 1] | linf norm of last round's perturbation divided by ``epsilon`` |
    | ``round`` | 1 | [0, 1] | rounds played / ``rounds`` |

    ## Rewards

    attacker: ``+1`` if the victim is fooled, ``-1`` otherwise. defender: the
    negative of that, minus ``clean_cost_weight * clean_cost[defense]`` where
    ``clean_cost[defense] = clean_accuracy["none"] - clean_accuracy[defense]``
    (the signed drop of clean test accuracy against no defense; see
    ``core.clean_accuracy`` and ``core.clean_cost``). With
    ``clean_cost_weight=0`` the game is zero-sum.

    ## Starting State

    Round 0 with an input drawn uniformly (from the copy's own rng) from the test
    inputs the standard model classifies correctly, no previous defense (zero
    one-hot), and zero last-round outcome.

    ## Episode End

    After ``rounds`` rounds both agents are **terminated** (not truncated): the
    round counter is part of both observations, so the horizon is part of the
    game (as the query budget is in ``Evasion-v0``), and a learner should not
    bootstrap past it. The PettingZoo env then has no live agents left.

    ## Info

    Per agent, the same keys: ``fooled`` (bool), ``defense`` (int index),
    ``defense_name`` (str), ``clean_accuracy_of_defense`` (float), ``clean_cost``
    (float, before the weight), ``perturbation_linf`` (float), ``true_label``,
    ``predicted_label`` (of the defended classifier), ``sample_index``, and
    ``round`` (the index of the round just played, from 0).
    Reset infos carry ``sample_index``, ``true_label`` and ``round``.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded) or another dataset with zoo models.
    * ``victim``: the standard model (zoo name, default ``"standard"``, or ``nn.Module``).
    * ``robust_victim``: the model of the ``"robust_model"`` defense (default ``"madry"``).
    * ``epsilon``: linf radius (> 0), default 0.2.
    * ``rounds``: rounds per episode (integer >= 1), default 10.
    * ``defenses``: sequence of names from :data:`DEFENSES` (no repeats), the
      defender's action ``i`` is ``defenses[i]``; default all five in the order above.
    * ``quant_levels``: grey levels of quantization (integer >= 2), default 4.
    * ``denoise_filter``: ``"median"`` (default) or ``"mean"``; ``denoise_size``: odd kernel size >= 3, default 3.
    * ``smoothing_sigma``: noise std (> 0), default 0.25; ``n_samples``: votes (integer >= 1), default 16.
    * ``clean_cost_weight``: weight of the clean-accuracy cost (>= 0), default 1.0.
    * ``attacker_white_box``: whether the attacker sees the gradient sign (default True).
    * ``device``: torch device of the models (default ``"cpu"``).

    The clean accuracy of ``"smoothing"`` is measured with a fixed noise seed
    (:data:`CLEAN_ACCURACY_SEED`), so it is the same for every seed of the game.

    ## Version History

    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        victim: Any = "standard",
        robust_victim: Any = "madry",
        epsilon: float = 0.2,
        rounds: int = 10,
        defenses: Sequence[str] = DEFENSES,
        quant_levels: int = 4,
        denoise_filter: str = "median",
        denoise_size: int = 3,
        smoothing_sigma: float = 0.25,
        n_samples: int = 16,
        clean_cost_weight: float = 1.0,
        attacker_white_box: bool = True,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        # validate every argument before loading any model
        self.epsilon = check_positive("epsilon", epsilon)
        self.rounds = check_number("rounds", rounds, low=1, integer=True)
        if isinstance(defenses, str) or not isinstance(defenses, Sequence) or len(defenses) == 0:
            raise ValueError(f"defenses={defenses!r} must be a non-empty sequence of names from {DEFENSES}")
        for name in defenses:
            if name not in DEFENSES:
                raise ValueError(f"defenses contains {name!r}, which is not a defense; allowed: {', '.join(map(repr, DEFENSES))}")
        if len(set(defenses)) != len(defenses):
            raise ValueError(f"defenses={tuple(defenses)!r} repeats a defense; each may appear once")
        self.defenses: tuple[str, ...] = tuple(defenses)
        self.quant_levels = check_number("quant_levels", quant_levels, low=2, integer=True)
        self.denoise_filter = check_choice("denoise_filter", denoise_filter, DENOISE_FILTERS)
        self.denoise_size = check_number("denoise_size", denoise_size, low=3, integer=True)
        if self.denoise_size % 2 == 0:
            raise ValueError(f"denoise_size={denoise_size!r} must be odd (3, 5, ...)")
        self.smoothing_sigma = check_positive("smoothing_sigma", smoothing_sigma)
        self.n_samples = check_number("n_samples", n_samples, low=1, integer=True)
        self.clean_cost_weight = check_number("clean_cost_weight", clean_cost_weight, low=0.0)
        self.attacker_white_box = bool(check_choice("attacker_white_box", attacker_white_box, (True, False)))

        self.victim = Victim.build(victim, dataset=dataset, device=device)
        try:
            self.robust = Victim.build(robust_victim, dataset=dataset, device=device) if "robust_model" in self.defenses else None
        except (ValueError, TypeError) as e:
            raise type(e)(f"robust_victim: {e}") from None
        self.pool = self.victim.correct_indices()
        if len(self.pool) == 0:
            raise ValueError(f"victim {self.victim.name!r} classifies no test input correctly; nothing to attack")

        d = self.d = int(np.prod(self.victim.image_shape))
        K = self.K = self.victim.num_classes
        D = self.D = len(self.defenses)
        self._flat_images = self.victim.images.reshape(len(self.victim.labels), d)
        self._eye_k = np.eye(K, dtype=np.float32)
        self._eye_d = np.eye(D, dtype=np.float32)

        # ---- spaces
        att_parts = [("x", d, 0.0, 1.0), ("scores", K, 0.0, 1.0)]
        if self.attacker_white_box:
            att_parts.append(("gradient", d, -1.0, 1.0))
        att_parts += [("previous_defense", D, 0.0, 1.0), ("round", 1, 0.0, 1.0)]
        def_parts = [("previous_defense", D, 0.0, 1.0), ("last_fooled", 1, 0.0, 1.0), ("last_perturbation", 1, 0.0, 1.0), ("round", 1, 0.0, 1.0)]
        self.obs_slices: dict[str, dict[str, slice]] = {}
        self.observation_spaces: dict[str, spaces.Box] = {}
        for agent, parts in zip(AGENTS, (att_parts, def_parts)):
            self.observation_spaces[agent], self.obs_slices[agent] = flat_box(parts)
        self.action_spaces: dict[str, spaces.Space] = {
            "attacker": spaces.Box(-1.0, 1.0, (d,), dtype=np.float32),
            "defender": spaces.Discrete(D),
        }
        self.single_observation_space = spaces.Dict(self.observation_spaces)
        self.single_action_space = spaces.Dict(self.action_spaces)

        # ---- clean accuracy of each defense, once, on the whole clean test split
        labels = self.victim.labels
        noise_rng = np.random.default_rng(CLEAN_ACCURACY_SEED)
        self.clean_accuracy: dict[str, float] = {}
        for name in ("none", *self.defenses):
            if name not in self.clean_accuracy:
                pred = self.defended_predict(name, self._flat_images, [noise_rng] * len(labels))
                self.clean_accuracy[name] = float((pred == labels).mean())
        self.clean_cost = {name: self.clean_accuracy["none"] - self.clean_accuracy[name] for name in self.defenses}
        self._clean_acc_arr = np.array([self.clean_accuracy[n] for n in self.defenses])
        self._clean_cost_arr = np.array([self.clean_cost[n] for n in self.defenses])

        # ---- per-copy state
        n = self.num_envs
        self.x0 = np.zeros((n, d), np.float32)
        self.scores = np.zeros((n, K), np.float32)
        self.grad_sign = np.zeros((n, d), np.float32)
        self.true_label = np.zeros(n, np.int64)
        self.sample_index = np.zeros(n, np.int64)
        self.round = np.zeros(n, np.int64)
        self.prev_defense = np.full(n, -1, np.int64)
        self.last_fooled = np.zeros(n, bool)
        self.last_linf = np.zeros(n, np.float32)
        # last outcome, for rendering
        self.last_pred = np.full(n, -1, np.int64)
        self.last_label = np.full(n, -1, np.int64)
        self.last_sample = np.full(n, -1, np.int64)
        self.last_rewards = np.zeros((n, 2), np.float64)

    # ------------------------------------------------------------- seeding
    def seed(self, seed: int) -> None:
        """Seed copy ``i`` with ``seed + i`` (as a vector env does); copy ``i`` then follows a single env seeded ``seed + i``."""
        for i in range(self.num_envs):
            self.rngs[i], _ = seeding.np_random(int(seed) + i)

    # --------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        self.round[idx] = 0
        self.prev_defense[idx] = -1
        self.last_fooled[idx] = False
        self.last_linf[idx] = 0.0
        self.last_pred[idx] = -1
        self.last_label[idx] = -1
        self.last_sample[idx] = -1
        self.last_rewards[idx] = 0.0
        self._draw_inputs(idx)
        info = {"sample_index": self.sample_index[idx].copy(), "true_label": self.true_label[idx].copy(), "round": self.round[idx].copy()}
        return self._observe(idx), {agent: dict(info) for agent in AGENTS}

    # ---------------------------------------------------------------- step
    def validate_actions(self, actions: Any, batch: int) -> dict[str, np.ndarray]:
        """Check a dict ``{agent: batch of actions}``; raise ``ValueError`` naming the agent's action if one is outside its space."""
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict with keys {AGENTS}, got {type(actions).__name__}")
        missing = [a for a in AGENTS if a not in actions]
        extra = [a for a in actions if a not in AGENTS]
        if missing or extra:
            raise ValueError(f"actions must have exactly the keys {AGENTS}; missing {missing}, unknown {extra}")
        return {a: validate_batch(self.action_spaces[a], actions[a], batch, name=f"actions[{a!r}]") for a in AGENTS}

    def step_indices(self, idx, actions):
        """Play one round in copies ``idx``. ``actions`` is a validated dict of per-agent batches.

        Returns ``(obs, rewards, terminated, truncated, info)`` with ``obs``,
        ``rewards`` and ``info`` dicts keyed by agent.
        """
        idx = np.asarray(idx, dtype=np.int64)
        k = len(idx)
        a_att = np.asarray(actions["attacker"], np.float32)
        defense = np.asarray(actions["defender"], np.int64)
        x0 = self.x0[idx]
        x_adv = np.clip(x0 + self.epsilon * a_att, 0.0, 1.0).astype(np.float32)
        linf = np.abs(x_adv - x0).max(1) / self.epsilon

        pred = np.empty(k, np.int64)
        for j, name in enumerate(self.defenses):
            rows = np.flatnonzero(defense == j)
            if len(rows):
                pred[rows] = self.defended_predict(name, x_adv[rows], [self.rngs[i] for i in idx[rows]])
        labels = self.true_label[idx].copy()
        fooled = pred != labels
        r_att = np.where(fooled, 1.0, -1.0)
        r_def = -r_att - self.clean_cost_weight * self._clean_cost_arr[defense]

        info = {
            "fooled": fooled,
            "defense": defense.copy(),
            "defense_name": np.array([self.defenses[j] for j in defense], dtype=object),
            "clean_accuracy_of_defense": self._clean_acc_arr[defense],
            "clean_cost": self._clean_cost_arr[defense],
            "perturbation_linf": (linf * self.epsilon).astype(np.float64),
            "true_label": labels,
            "predicted_label": pred,
            "sample_index": self.sample_index[idx].copy(),
            "round": self.round[idx].copy(),
        }
        # the outcome becomes history, then the next round's input is drawn
        self.prev_defense[idx] = defense
        self.last_fooled[idx] = fooled
        self.last_linf[idx] = np.clip(linf, 0.0, 1.0)
        self.last_pred[idx], self.last_label[idx], self.last_sample[idx] = pred, labels, self.sample_index[idx]
        self.last_rewards[idx] = np.stack([r_att, r_def], 1)
        self.round[idx] += 1
        self._draw_inputs(idx)
        terminated = self.round[idx] >= self.rounds
        rewards = {"attacker": r_att.astype(np.float64), "defender": r_def.astype(np.float64)}
        infos = {a: {key: v.copy() for key, v in info.items()} for a in AGENTS}
        return self._observe(idx), rewards, terminated, np.zeros(k, bool), infos

    # ------------------------------------------------------------ defenses
    def defended_predict(self, defense: str, x_flat: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Labels that the classifier defended by ``defense`` gives the flat inputs ``x_flat`` (one rng per row, for smoothing)."""
        check_choice("defense", defense, DEFENSES)
        x_flat = np.asarray(x_flat, np.float32)
        if len(x_flat) == 0:
            return np.zeros(0, np.int64)
        if defense == "none":
            return self.victim.predict(x_flat)
        if defense == "robust_model":
            if self.robust is None:
                raise ValueError("defense='robust_model' is not among this game's defenses")
            return self.robust.predict(x_flat)
        if defense == "quantization":
            levels = self.quant_levels - 1
            return self.victim.predict((np.round(x_flat * levels) / levels).astype(np.float32))
        if defense == "denoising":
            return self.victim.predict(self._denoise(x_flat))
        # randomized smoothing: majority vote over noisy copies, each row's noise from its own rng
        if len(rngs) != len(x_flat):
            raise ValueError(f"rngs has {len(rngs)} generators; smoothing needs one per input row ({len(x_flat)})")
        m, d = self.n_samples, x_flat.shape[1]
        noise = np.stack([rng.standard_normal((m, d), dtype=np.float32) for rng in rngs])
        noisy = (x_flat[:, None, :] + self.smoothing_sigma * noise).reshape(-1, d)
        votes = self.victim.predict(noisy).reshape(len(x_flat), m)
        counts = (votes[:, :, None] == np.arange(self.K)).sum(1)
        return counts.argmax(1).astype(np.int64)

    def _denoise(self, x_flat: np.ndarray) -> np.ndarray:
        c, h, w = self.victim.image_shape
        s = self.denoise_size
        t = torch.from_numpy(x_flat).view(-1, c, h, w)
        t = F.pad(t, (s // 2,) * 4, mode="replicate")
        patches = F.unfold(t, s).view(len(x_flat), c, s * s, h * w)
        out = patches.median(2).values if self.denoise_filter == "median" else patches.mean(2)
        return out.reshape(len(x_flat), -1).numpy().astype(np.float32)

    # ------------------------------------------------------------ internals
    def _draw_inputs(self, idx: np.ndarray) -> None:
        """Draw each copy's next input from its own rng; compute the standard model's scores and gradient sign."""
        for i in idx:
            self.sample_index[i] = self.pool[self.rngs[i].integers(len(self.pool))]
        self.true_label[idx] = self.victim.labels[self.sample_index[idx]]
        self.x0[idx] = self._flat_images[self.sample_index[idx]]
        if self.attacker_white_box:
            logits, grad = self.victim.logits_and_grad(self.x0[idx], self.true_label[idx], targeted=False)
            self.grad_sign[idx] = np.sign(grad.cpu().numpy())
        else:
            logits = self.victim.logits(self.x0[idx])
        self.scores[idx] = torch.softmax(logits, 1).cpu().numpy()

    def _observe(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        frac = (self.round[idx] / self.rounds).astype(np.float32)
        prev = np.zeros((k, self.D), np.float32)
        has_prev = self.prev_defense[idx] >= 0
        prev[has_prev] = self._eye_d[self.prev_defense[idx][has_prev]]

        s = self.obs_slices["attacker"]
        att = np.empty((k, self.observation_spaces["attacker"].shape[0]), np.float32)
        att[:, s["x"]] = self.x0[idx]
        att[:, s["scores"]] = self.scores[idx]
        if self.attacker_white_box:
            att[:, s["gradient"]] = self.grad_sign[idx]
        att[:, s["previous_defense"]] = prev
        att[:, s["round"]] = frac[:, None]

        s = self.obs_slices["defender"]
        dfd = np.empty((k, self.observation_spaces["defender"].shape[0]), np.float32)
        dfd[:, s["previous_defense"]] = prev
        dfd[:, s["last_fooled"]] = self.last_fooled[idx, None]
        dfd[:, s["last_perturbation"]] = self.last_linf[idx, None]
        dfd[:, s["round"]] = frac[:, None]
        return {"attacker": att, "defender": dfd}

    def state_of(self, idx: np.ndarray) -> np.ndarray:
        """Global state of copies ``idx``: both observations, concatenated (attacker first)."""
        obs = self._observe(np.asarray(idx, dtype=np.int64))
        return np.concatenate([obs["attacker"], obs["defender"]], 1)

    # ------------------------------------------------------------ rendering
    def render_index(self, i: int) -> str:
        head = f"round {self.round[i]}/{self.rounds}  eps={self.epsilon}"
        if self.prev_defense[i] < 0:
            return f"{head}  next input: sample {self.sample_index[i]} (label {self.true_label[i]})"
        outcome = "FOOLED" if self.last_fooled[i] else "held"
        return (
            f"{head}  last round: sample {self.last_sample[i]} label {self.last_label[i]} "
            f"defense={self.defenses[self.prev_defense[i]]} pred={self.last_pred[i]} {outcome} "
            f"linf/eps={self.last_linf[i]:.2f}  rewards attacker {self.last_rewards[i, 0]:+.3f} "
            f"defender {self.last_rewards[i, 1]:+.3f}"
        )


class AttackDefenseParallelEnv(ParallelGameView):
    __doc__ = AttackDefenseCore.__doc__

    metadata = {"name": "attack_defense_v0", "render_modes": ["ansi"], "is_parallelizable": True, "render_fps": 1}
    core_class = AttackDefenseCore


def parallel_env(**kwargs: Any) -> AttackDefenseParallelEnv:
    """Build ``AttackDefense-v0`` as a PettingZoo ``ParallelEnv`` (keyword arguments as in :class:`AttackDefenseCore`)."""
    return AttackDefenseParallelEnv(**kwargs)

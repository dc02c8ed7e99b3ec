"""``deploy_envs/Evasion-v0``: evade a classifier within an Lp budget."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.topics.evasion.eot import TransformDistribution, eot_logits_and_grad
from deploy_envs.topics.evasion.query_attack import QueryAttackCore
from deploy_envs.topics.evasion.rendering import render_attack

THREAT_MODELS = ("white_box", "scores", "decision")
NORMS = ("linf", "l2")
ACTION_MODES = ("step", "set")
EOT_MODES = ("attack", "measure")


def _clip_(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip the float32 array ``a`` in place, through torch's ``clamp_`` on the same memory: the same values
    (NaN stays NaN) in a fifth of the time of numpy's ``maximum`` and ``minimum`` on a ``(256, 64)`` batch."""
    torch.from_numpy(a).clamp_(lo, hi)
    return a


class EvasionCore(QueryAttackCore):
    """## Description

    The agent is an attacker that perturbs one input per episode so that a fixed
    victim classifier misclassifies it, while the perturbation stays inside an Lp
    ball of radius ``epsilon`` (Szegedy et al. 2014; Goodfellow et al. 2015; Madry
    et al. 2018). Each episode draws a test input the victim classifies correctly;
    each step is one query of the victim on the current adversarial input.

    ## Action Space

    ``Box(-1, 1, (d,), float32)`` with ``d`` the number of input pixels.
    With ``action_mode="step"`` (default) the perturbation moves by
    ``step_size * epsilon * action`` and is projected back onto the ball and the
    pixel range [0, 1]; the PGD step is ``action = sign(gradient)``. With
    ``action_mode="set"`` the perturbation is set to ``epsilon * action`` (projected).

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``x`` | d | [0, 1] | current adversarial input |
    | ``delta`` | d | [-1, 1] | current perturbation divided by ``epsilon`` |
    | ``feedback`` | K | [0, 1] | ``scores``/``white_box``: softmax output; ``decision``: one-hot top label |
    | ``label`` | K | [0, 1] | one-hot true label (untargeted) or target label (targeted) |
    | ``gradient`` | d | [-1, 1] | ``white_box`` only: ascent direction of the attack loss, divided by its max-abs |
    | ``budget`` | 1 | [0, 1] | fraction of the query budget left |

    The ``scores`` and ``decision`` threat models never expose gradients or
    weights, in the observation or in ``info``.

    ## Rewards

    ``reward_scale * (margin_before - margin_after)`` (dense progress on the
    logit margin of the true class, or towards the target) plus ``success_bonus``
    on success, minus ``query_cost`` per step. Under ``decision`` the dense term is
    off by default (``dense_reward=None``) since it would leak the scores.

    ## Starting State

    A test input drawn uniformly from those the victim classifies correctly (or
    ``options={"index": i}`` to choose it), a zero perturbation, and in targeted
    mode a target drawn uniformly from the other classes (or ``target_class``).
    The starting observation contains the victim's answer on the clean input.

    ## Episode End

    Terminates when the attack succeeds (untargeted: the prediction differs from the
    true label; targeted: it equals the target) or when the query budget
    ``max_queries`` is spent (the budget is part of the observation, so this is a
    termination, not a truncation).

    ## Info

    ``success``, ``queries``, ``perturbation_norm`` (in ``norm``), ``true_label``,
    ``predicted_label``, ``sample_index``; ``target_label`` when targeted; ``margin``
    except under the ``decision`` threat model; ``eot_success_rate`` and ``eot_success``
    when ``transforms`` is set.

    ## Expectation over Transformation

    With ``transforms`` set (Athalye et al. 2018), every query shows the victim
    ``eot_samples`` fresh random transformations of the adversarial input (rotation,
    translation, scaling, brightness and contrast, Gaussian noise; see
    :class:`~deploy_envs.topics.evasion.eot.TransformDistribution` for the default
    ranges), drawn from a generator spawned from the copy's own at each episode start
    (so the inputs drawn are those of a plain env with the same seed). ``info["eot_success_rate"]`` is the
    fraction of those views that are misclassified (targeted: classified as the target),
    and ``info["eot_success"]`` says whether it reaches ``eot_threshold``.
    With ``eot_mode="attack"`` (default) the whole episode is in expectation: the
    feedback is the softmax averaged over the views (``decision``: the one-hot majority
    label), the white-box gradient is the average of the views' gradients (so the ``pgd``
    baseline becomes EOT-PGD), the margin (and so the dense reward) is the mean over the
    views, ``predicted_label`` is the majority label, and ``success`` is
    ``eot_success_rate >= eot_threshold``. With ``eot_mode="measure"`` the episode is
    the plain one and only ``eot_success_rate`` is added to the info, to measure how
    plain adversarial examples fare under the transformations.

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded), ``"mnist"``, ``"fashion_mnist"``.
    * ``victim``: zoo model (``"standard"``, ``"madry"`` or a full zoo name) or an ``nn.Module``.
    * ``norm``: ``"linf"`` or ``"l2"``; ``epsilon``: radius (> 0), default 0.2.
    * ``threat_model``: ``"white_box"``, ``"scores"`` (default) or ``"decision"``.
    * ``targeted`` (bool), ``target_class`` (int or None).
    * ``max_queries``: query budget per episode (default 20).
    * ``action_mode``: ``"step"`` or ``"set"``; ``step_size``: step as a fraction of epsilon (default 0.25).
    * ``reward_scale``, ``success_bonus`` (default 5), ``query_cost`` (default 0), ``dense_reward``
      (``True`` under ``decision`` also needs ``allow_score_leak=True``: the margin leaks the scores).
    * ``split``: ``"test"`` (default) or ``"train"`` inputs; ``device``: torch device.
    * ``transforms``: ``None`` (default, no EOT), ``"default"``, or a dict of
      :class:`~deploy_envs.topics.evasion.eot.TransformDistribution` fields over the defaults.
    * ``eot_samples``: views per query (default 16); ``eot_mode``: ``"attack"`` or
      ``"measure"``; ``eot_threshold``: success threshold on the view success rate (default 0.5).

    ## Version History

    * v0: initial release; ``transforms`` (EOT) added without changing the default behaviour.
    """

    THREAT_MODELS = THREAT_MODELS

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        norm: str = "linf",
        epsilon: float = 0.2,
        action_mode: str = "step",
        step_size: float = 0.25,
        transforms: Any = None,
        eot_samples: int = 16,
        eot_mode: str = "attack",
        eot_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        # the threat model's own arguments; the shared ones (victim, targeting, budget, reward
        # weights) are QueryAttackCore's
        self.eot_dist = None if transforms is None else TransformDistribution.from_value(transforms)
        self.eot_samples = check_positive("eot_samples", eot_samples, integer=True)
        self.eot_mode = check_choice("eot_mode", eot_mode, EOT_MODES)
        self.eot_threshold = check_number("eot_threshold", eot_threshold, low=0.0, high=1.0, low_inclusive=False)
        self.norm = check_choice("norm", norm, NORMS)
        self.epsilon = check_positive("epsilon", epsilon)
        self.action_mode = check_choice("action_mode", action_mode, ACTION_MODES)
        self.step_size = check_positive("step_size", step_size)
        super().__init__(num_envs, render_mode, **kwargs)

        d = self.d
        after = (("gradient", d, -1.0, 1.0),) if self.threat_model == "white_box" else ()
        self.single_observation_space, self.obs_slices = flat_box(self.attack_parts(before=(("delta", d, -1.0, 1.0),), after=after))
        self.obs_dim = self.single_observation_space.shape[0]
        self.single_action_space = spaces.Box(-1.0, 1.0, (d,), dtype=np.float32)
        self.delta = np.zeros((self.num_envs, d), np.float32)
        self.view_rngs: list[np.random.Generator | None] = [None] * self.num_envs

    # ----------------------------------------------------------------- reset
    def _start(self, idx, options=None) -> np.ndarray:
        """Draw the new episodes of copies ``idx`` (state only, no query); return their clean inputs."""
        x0 = self.start_episodes(idx, options)
        if self.eot_dist is not None:
            # the views come from a child generator per episode, so the inputs drawn above
            # (and at later resets) are the ones a plain env with the same seed draws
            for i in idx.tolist():
                self.view_rngs[i] = self.rngs[i].spawn(1)[0]
        self.delta[idx] = 0.0
        return x0

    def reset_indices(self, idx, options=None):
        return self._observe(idx, self._start(idx, options))

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        prev_margin = self.margin[idx]
        obs, info = self._observe(idx, self._move(idx, actions))
        return self.outcome(idx, prev_margin, obs, info)

    def autoreset_step(self, reset_mask: np.ndarray, actions: np.ndarray):
        """Restart the copies in ``reset_mask`` and step all others, with one victim query.

        What the vector view's ``NEXT_STEP`` autoreset does with ``reset_indices`` on
        the finished copies and ``step_indices`` on the others, in one forward pass
        over the whole batch. Returns ``(obs, reward, terminated, truncated, info)``
        for all copies; a restarted copy has its reset observation and info, reward 0
        and no done flag (its action is ignored).
        """
        reset_idx = np.flatnonzero(reset_mask)
        prev_margin = self.margin.copy()
        x = self._move(self._all, actions)  # the restarted copies' moves are undone by _start
        x[reset_idx] = self._start(reset_idx)
        obs, info = self._observe(self._all, x)
        obs, reward, terminated, truncated, info = self.outcome(self._all, prev_margin, obs, info)
        reward[reset_idx] = 0.0
        terminated[reset_idx] = False
        return obs, reward, terminated, truncated, info

    def _move(self, idx, actions) -> np.ndarray:
        """Apply the actions of copies ``idx`` to their perturbation; return the new adversarial inputs."""
        full = len(idx) == self.num_envs
        x0 = self.x0 if full else self.x0[idx]
        if self.action_mode == "step":
            delta = actions * (self.step_size * self.epsilon)
            delta += self.delta if full else self.delta[idx]
        else:
            delta = actions * self.epsilon
        delta = self._project(delta)
        x_adv = np.add(x0, delta, out=delta)  # delta is a fresh array: reuse it
        _clip_(x_adv, 0.0, 1.0)
        if full:
            np.subtract(x_adv, x0, out=self.delta)
            self.queries += 1
        else:
            self.delta[idx] = x_adv - x0
            self.queries[idx] += 1
        return x_adv

    # ------------------------------------------------------------- internals
    def _project(self, delta: np.ndarray) -> np.ndarray:
        """Project (in place) onto the epsilon-ball of the norm."""
        eps = self.epsilon
        if self.norm == "linf":
            return _clip_(delta, -eps, eps)
        norms = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        scale = np.minimum(1.0, eps / np.maximum(norms, 1e-12)).astype(np.float32)
        delta *= scale[:, None]
        return delta

    def _eot_views(self, idx, x_adv: np.ndarray, labels: np.ndarray, with_grad: bool):
        """Logits ``(k, S, K)`` of fresh transformed views of ``x_adv`` (copy ``idx[j]``'s draws
        from its own generator) and the EOT gradient when ``with_grad``."""
        S = self.eot_samples
        params = np.stack([self.eot_dist.sample(self.view_rngs[i], S) for i in np.asarray(idx).tolist()])
        x = self.victim._tensor(x_adv)
        lab = torch.from_numpy(np.ascontiguousarray(labels)).to(self.victim.device)
        logits, grad = eot_logits_and_grad(self.victim.model, x, lab, params, self.eot_dist, targeted=self.targeted, with_grad=with_grad)
        return logits.cpu().numpy(), (None if grad is None else grad.flatten(1))

    def _view_success(self, z: np.ndarray, labels: np.ndarray, true_label: np.ndarray) -> np.ndarray:
        pred = z.argmax(-1)
        hit = (pred == labels[:, None]) if self.targeted else (pred != true_label[:, None])
        return hit.mean(1)

    def _observe(self, idx, x_adv: np.ndarray):
        if self.eot_dist is not None:
            if self.eot_mode == "attack":
                return self._observe_eot(idx, x_adv)
            obs, info = self._observe_plain(idx, x_adv)
            labels = info["target_label"] if self.targeted else info["true_label"]
            z, _ = self._eot_views(idx, x_adv, labels, with_grad=False)
            rate = self._view_success(z, labels, info["true_label"])
            info["eot_success_rate"] = rate
            info["eot_success"] = rate >= self.eot_threshold
            return obs, info
        return self._observe_plain(idx, x_adv)

    def _observe_eot(self, idx, x_adv: np.ndarray):
        """``_observe`` in expectation over transformations (``eot_mode="attack"``)."""
        k = len(idx)
        true_label = self.true_label[idx].copy()
        labels = self.target[idx].copy() if self.targeted else true_label
        z, grad = self._eot_views(idx, x_adv, labels, with_grad=self.threat_model == "white_box")
        rows = self._all[:k]
        z_l = z[rows, :, labels]  # (k, S)
        others = z.copy()
        others[rows, :, labels] = -np.inf
        other = others.max(-1)
        margin = ((other - z_l) if self.targeted else (z_l - other)).mean(1).astype(np.float32)
        votes = (z.argmax(-1)[:, :, None] == np.arange(self.K)).sum(1)  # (k, K) view labels per class
        pred = votes.argmax(1)
        rate = self._view_success(z, labels, true_label)
        self.margin[idx] = margin
        self.pred[idx] = pred
        delta, queries, sample_index = self.delta[idx], self.queries[idx].copy(), self.sample_index[idx].copy()
        obs = np.empty((k, self.obs_dim), np.float32)
        self.write_attack_obs(obs, x_adv, pred, labels, queries)
        s = self.obs_slices
        obs[:, s["delta"]] = np.clip(delta / self.epsilon, -1.0, 1.0)
        if self.threat_model != "decision":
            e = np.exp(z - z.max(-1, keepdims=True))
            obs[:, s["feedback"]] = (e / e.sum(-1, keepdims=True)).mean(1)
        if self.threat_model == "white_box":
            g = grad.cpu().numpy()
            obs[:, s["gradient"]] = g / np.maximum(np.abs(g).max(1, keepdims=True), 1e-12)
        success = rate >= self.eot_threshold
        info = self.attack_info(success, queries, true_label, pred, sample_index, labels.copy(), margin, perturbation_norm=self._norm(delta),
                                eot_success_rate=rate, eot_success=success.copy())
        return obs, info

    def _observe_plain(self, idx, x_adv: np.ndarray):
        # This runs on every step of every copy: it is written for few, whole-batch
        # numpy operations, since on a small batch each call costs more than its arithmetic.
        k = len(idx)
        full = k == self.num_envs  # idx is then all copies in order: plain copies instead of gathers
        true_label = self.true_label.copy() if full else self.true_label[idx]
        if self.targeted:
            labels = self.target.copy() if full else self.target[idx]
        else:
            labels = true_label  # = attack_labels(idx)
        if self.threat_model == "white_box":
            logits, grad = self.victim.logits_and_grad(x_adv, labels, self.targeted)
        else:
            logits = self.victim.logits(x_adv)
        z = logits.cpu().numpy()
        pred, margin, success = self.query(idx, z, labels)
        if full:
            delta, queries, sample_index = self.delta, self.queries.copy(), self.sample_index.copy()
        else:
            delta, queries, sample_index = self.delta[idx], self.queries[idx], self.sample_index[idx]
        obs = np.empty((k, self.obs_dim), np.float32)
        self.write_attack_obs(obs, x_adv, pred, labels, queries)
        s = self.obs_slices
        part = obs[:, s["delta"]]
        torch.mul(torch.from_numpy(delta), 1.0 / self.epsilon, out=torch.from_numpy(part)).clamp_(-1.0, 1.0)  # as _clip_
        if self.threat_model != "decision":  # softmax of the logits, in place
            feedback = obs[:, s["feedback"]]
            np.subtract(z, z[self._all[:k], pred][:, None], out=feedback)
            np.exp(feedback, out=feedback)
            feedback /= feedback.sum(1, keepdims=True)
        if self.threat_model == "white_box":
            g = grad.cpu().numpy()
            np.divide(g, np.maximum(np.abs(g).max(1, keepdims=True), 1e-12), out=obs[:, s["gradient"]])
        # every array in the info is fresh: none aliases the core's state
        return obs, self.attack_info(success, queries, true_label, pred, sample_index, labels, margin, perturbation_norm=self._norm(delta))

    def _norm(self, delta: np.ndarray) -> np.ndarray:
        if self.norm == "linf":  # torch's row maximum: the same values, about three times numpy's speed on 64-wide rows
            return torch.from_numpy(delta).abs().amax(1).numpy()
        return np.sqrt(np.einsum("ij,ij->i", delta, delta))

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        return (
            f"sample {self.sample_index[i]} true={self.true_label[i]} pred={self.pred[i]} "
            f"queries={self.queries[i]}/{self.max_queries} {self.norm}={self._norm(self.delta[i:i+1])[0]:.3f}"
            f" (eps {self.epsilon})"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        shape = self.victim.image_shape
        return render_attack(
            self,
            self.x0[i].reshape(shape),
            self.delta[i].reshape(shape),
            true_label=int(self.true_label[i]),
            adv_label=int(self.pred[i]),
            title=f"Evasion: {self.threat_model}, {self.norm} eps={self.epsilon}, queries {self.queries[i]}/{self.max_queries}",
            scale=self.epsilon,
        )

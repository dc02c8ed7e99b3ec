"""``deploy_envs/ContextualBandit-v0``: a contextual bandit built from a labelled dataset."""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.data import DATASETS, load_dataset

SPLITS = ("train", "test", "all")
CHUNK = 128
"""Sample indices each copy draws from its own generator at a time."""


class ContextualBanditCore(BatchedCore):
    """## Description

    A contextual bandit made from a classification dataset by the supervised-to-bandit
    conversion (Langford & Zhang 2008, "The Epoch-Greedy Algorithm for Contextual
    Multi-armed Bandits"; Dudik, Langford & Li 2011; Bietti, Agarwal & Langford 2021,
    "A Contextual Bandit Bake-off", JMLR): each step shows one input drawn uniformly
    at random (with replacement) from the chosen split, the agent picks an arm (a
    class), and the reward is 1 when the arm is the true label and 0 otherwise. Only
    the pulled arm's reward is revealed, so the agent must explore to learn a
    classifier. Digits (8x8, 10 classes, embedded) by default: a linear policy such
    as LinUCB (Li et al. 2010) learns to get most pulls right within a few hundred
    steps, while a context-free bandit algorithm cannot beat the most frequent class.

    ## Action Space

    ``Discrete(K)``, ``K`` the number of classes: the predicted class.

    ## Observation Space

    A flat float32 ``Box`` in ``[0, 1]`` (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``context`` | d | [0, 1] | the current input, flattened (d = 64 for digits) |
    | ``last_arm`` | K | {0, 1} | one-hot of the previous pull (zeros at the start) |
    | ``last_reward`` | 1 | {0, 1} | reward of the previous pull (0 at the start) |

    The bandit feedback of the previous pull is in the observation so that batched
    agents (which see observations only) can learn from it; ``last_arm`` and
    ``last_reward`` have the same names as in ``Bandit-v0``, so context-free agents
    run on both.

    ## Rewards

    1 if the arm is the input's label, else 0.

    ## Starting State

    A first input drawn uniformly from the split; no previous pull.

    ## Episode End

    Truncated after ``horizon`` pulls (time is not in the observation: the inputs are
    i.i.d., so the horizon does not change what the best action is).

    ## Info

    ``arm``, ``optimal_arm`` (the label: the pull of the best policy, which knows
    the labels and earns reward 1 every step), ``step_pseudo_regret`` (``1 - reward``:
    with deterministic labels the pseudo-regret against that policy is the number of
    wrong pulls), ``pseudo_regret`` (cumulative), ``accuracy`` (fraction of pulls so
    far that were right). They reveal the label, for the evaluator only. The reset info
    has ``optimal_arm`` and ``pseudo_regret`` (0).

    ## Arguments

    * ``dataset``: ``"digits"`` (default, embedded), ``"mnist"``, ``"fashion_mnist"``
      (via :func:`deploy_envs.data.load_dataset`; these two need a cached download).
    * ``split``: ``"train"`` (default), ``"test"`` or ``"all"`` inputs.
    * ``horizon``: pulls per episode (default 1000).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        dataset: str = "digits",
        split: str = "train",
        horizon: int = 1000,
    ) -> None:
        super().__init__(num_envs, render_mode)
        check_choice("dataset", dataset, tuple(DATASETS))
        self.split = check_choice("split", split, SPLITS)
        self.horizon = check_positive("horizon", horizon, integer=True)
        data = load_dataset(dataset)
        self.dataset_name = dataset
        if split == "train":
            x, y = data.x_train, data.y_train
        elif split == "test":
            x, y = data.x_test, data.y_test
        else:
            x, y = np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])
        self.contexts = np.ascontiguousarray(x.reshape(len(y), -1), dtype=np.float32)
        self.labels = np.asarray(y, dtype=np.int64)
        K = self.arms = int(data.num_classes)
        d = self.context_dim = self.contexts.shape[1]
        self.single_observation_space, self.obs_slices = flat_box([("context", d, 0.0, 1.0), ("last_arm", K, 0.0, 1.0), ("last_reward", 1, 0.0, 1.0)])
        self.obs_dim = d + K + 1
        self.single_action_space = spaces.Discrete(K)

        n = self.num_envs
        self.sample = np.zeros(n, np.int64)
        self.t = np.zeros(n, np.int64)
        self.regret = np.zeros(n)
        self.correct = np.zeros(n, np.int64)
        self.last_arm = np.full(n, -1, np.int64)
        self.last_reward = np.zeros(n)
        self._buf = np.zeros((n, CHUNK), np.int64)
        self._ptr = np.full(n, CHUNK, np.int64)
        self._eye = np.eye(K, dtype=np.float32)

    def _next_samples(self, idx) -> np.ndarray:
        """Draw the next input of copies ``idx`` (each from its own generator, in blocks)."""
        ptr = self._ptr[idx]
        for i in idx[ptr >= CHUNK]:
            self._buf[i] = self.rngs[i].integers(len(self.labels), size=CHUNK)
            self._ptr[i] = 0
        ptr = self._ptr[idx]
        self._ptr[idx] = ptr + 1
        s = self._buf[idx, ptr]
        self.sample[idx] = s
        return s

    def reset_indices(self, idx, options=None):
        self._ptr[idx] = CHUNK
        s = self._next_samples(idx)
        self.t[idx] = 0
        self.regret[idx] = 0.0
        self.correct[idx] = 0
        self.last_arm[idx] = -1
        self.last_reward[idx] = 0.0
        obs = np.zeros((len(idx), self.obs_dim), np.float32)
        obs[:, self.obs_slices["context"]] = self.contexts[s]
        return obs, {"optimal_arm": self.labels[s], "pseudo_regret": np.zeros(len(idx))}

    def step_indices(self, idx, actions):
        k = len(idx)
        label = self.labels[self.sample[idx]]
        right = actions == label
        reward = right.astype(np.float64)
        self.regret[idx] += 1.0 - reward
        self.correct[idx] += right
        t = self.t[idx] + 1
        self.t[idx] = t
        self.last_arm[idx] = actions
        self.last_reward[idx] = reward
        info = {
            "arm": actions.copy(),
            "optimal_arm": label,
            "step_pseudo_regret": 1.0 - reward,
            "pseudo_regret": self.regret[idx],
            "accuracy": self.correct[idx] / t,
        }
        s = self._next_samples(idx)
        obs = np.empty((k, self.obs_dim), np.float32)
        sl = self.obs_slices
        obs[:, sl["context"]] = self.contexts[s]
        obs[:, sl["last_arm"]] = self._eye[actions]
        obs[:, sl["last_reward"]] = reward[:, None]
        truncated = t >= self.horizon
        return obs, reward, np.zeros(k, bool), truncated, info

    def render_ansi(self, i: int) -> str:
        return (
            f"t={self.t[i]}/{self.horizon} input #{self.sample[i]} (label {self.labels[self.sample[i]]}) "
            f"last arm={self.last_arm[i]} reward={self.last_reward[i]:.0f} accuracy so far="
            f"{self.correct[i] / max(1, self.t[i]):.3f} pseudo-regret={self.regret[i]:.0f}"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """The input now on show (the context), the arm pulled last and its reward, and the running accuracy."""
        from deploy_envs.core.rendering import image_of, no_ticks, sketch, text_panel

        sk = sketch(self, size=(480, 240), grid=(1, 2), width_ratios=(1, 1.4))
        ax_img, ax_txt = sk.begin(f"ContextualBandit ({self.dataset_name}): round {self.t[i]}/{self.horizon}")
        ax_img.imshow(image_of(self.contexts[self.sample[i]]), cmap="gray", vmin=0, vmax=1)
        ax_img.set_title("context now shown", fontsize=9)
        no_ticks(ax_img)
        last = "-" if self.last_arm[i] < 0 else f"{self.last_arm[i]} ({'right' if self.last_reward[i] > 0 else 'wrong'})"
        text_panel(ax_txt, [
            f"last arm pulled : {last}",
            f"reward          : {self.last_reward[i]:.0f}",
            f"accuracy so far : {self.correct[i] / max(1, self.t[i]):.3f}",
            f"pseudo-regret   : {self.regret[i]:.0f}",
            f"arms (classes)  : {self.arms}",
        ], fontsize=9)
        return sk.finish()

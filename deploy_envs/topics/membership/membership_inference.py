"""``deploy_envs/MembershipInference-v0``: tell a victim's training records from others through its prediction API.

Also :func:`membership_metrics` (accuracy, advantage, TPR at 1% FPR, AUC of a set of
membership scores) and :func:`collect_scores` (an agent's pooled scores over many
episodes, for metrics that one short episode estimates poorly).
"""
from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from deploy_envs.api.model_api import OUTPUTS, ModelAPI
from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import (
    check_choice,
    check_number,
    check_positive,
    check_probability,
)
from deploy_envs.models.membership_victims import (
    VICTIM_RECIPES,
    VICTIMS,
    load_victim,
    membership_split,
)

MI_DEFENSES = ("none", "rounding", "noise")
ACTIONS = ("score", "binary")
REWARDS = ("correct", "log")
LOW_FPR = 0.01
_P_CLIP = 0.01  # log-score reward: probabilities clipped to [0.01, 0.99], so a reward is in [log 0.02, log 1.98]


# ------------------------------------------------------------------ metrics
def _batched_metrics(scores: np.ndarray, member: np.ndarray, valid: np.ndarray, low_fpr: float = LOW_FPR) -> dict[str, np.ndarray]:
    """Metrics of rows of scores ``(B, R)`` where ``valid``: guess "member" where score > 0."""
    pred = scores > 0
    pos, neg = member & valid, ~member & valid
    P, N = pos.sum(1), neg.sum(1)
    tp, fp = (pred & pos).sum(1), (pred & neg).sum(1)
    tpr = tp / np.maximum(P, 1)
    fpr = fp / np.maximum(N, 1)
    n = valid.sum(1)
    accuracy = np.where(n > 0, (tp + N - fp) / np.maximum(n, 1), 0.0)
    # TPR at FPR <= low_fpr: the threshold is the (k+1)-th largest non-member score, k = floor(low_fpr * N);
    # "member" strictly above it, so at most k non-members pass (ties never help the attacker)
    neg_scores = -np.sort(-np.where(neg, scores, -np.inf), axis=1)
    k = np.floor(low_fpr * N).astype(np.int64)
    thr = np.take_along_axis(neg_scores, np.minimum(k, scores.shape[1] - 1)[:, None], 1)[:, 0]
    thr = np.where(N > 0, thr, -np.inf)
    tpr_low = ((scores > thr[:, None]) & pos).sum(1) / np.maximum(P, 1)
    return {"accuracy": accuracy, "advantage": tpr - fpr, "tpr_at_1_fpr": tpr_low, "tpr": tpr, "fpr": fpr}


def membership_metrics(scores: Any, is_member: Any, low_fpr: float = LOW_FPR) -> dict[str, float]:
    """Membership-inference metrics of ``scores`` (higher = more likely a member; > 0 = guessed member).

    ``accuracy`` and ``advantage`` (TPR - FPR, Yeom et al. 2018) of the guesses ``score > 0``;
    ``tpr_at_1_fpr``: the true-positive rate at a false-positive rate of at most ``low_fpr``
    over all thresholds (Carlini et al. 2022, "Membership Inference Attacks From First
    Principles", IEEE S&P, argue for this over accuracy); ``auc``: ROC AUC (0.5 without
    both classes); ``members``/``nonmembers``: counts.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_member, dtype=bool).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"scores has {s.size} entries but is_member has {m.size}; give one membership per score")
    if not np.isfinite(s).all():
        raise ValueError("scores contains NaN or inf; give finite scores")
    check_probability("low_fpr", low_fpr)
    out = {k: float(v[0]) for k, v in _batched_metrics(s[None], m[None], np.ones((1, s.size), bool), low_fpr).items()}
    auc = 0.5
    if m.any() and (~m).any():
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(m, s))
    out.update(auc=auc, members=float(m.sum()), nonmembers=float((~m).sum()))
    return out


# --------------------------------------------------------------------- core
class MembershipCore(BatchedCore):
    """## Description

    The agent is a membership-inference attacker (Shokri et al. 2017, "Membership Inference
    Attacks Against Machine Learning Models", IEEE S&P) with query access to a victim
    classifier behind a :class:`~deploy_envs.api.ModelAPI`. The victim was trained on a
    member set (:mod:`deploy_envs.models.membership_victims`). Each step the env presents a
    candidate record: a member with probability ``member_prob`` (1/2), drawn uniformly from
    the member set, otherwise drawn from a held-out non-member set (the digits test split),
    together with the API's answer for it and the record's true label (attackers usually
    know it: Yeom et al. 2018). The agent answers with a membership score.

    Black box: the observation and ``info`` carry only the API's answer, the label and the
    episode's progress and scores, never the member set, weights or gradients. The data
    an attacker owns (the attacker's pool, disjoint from the members and the non-members) is
    available as ``core.pool``, and the victim's training recipe (not its weights) as
    ``core.recipe``, the knowledge Shokri et al.'s shadow-model attack assumes.

    ## Action Space

    ``action="score"`` (default): ``Box(-1, 1, (1,), float32)``, a membership score, > 0 meaning
    "member" (the magnitude is a confidence: TPR at low FPR ranks by it).
    ``action="binary"``: ``Discrete(2)``, 1 = member (score +1), 0 = non-member (score -1).

    ## Observation Space

    A flat ``Box(0, 1, (2K + 1,), float32)`` (``K`` = 10 classes; see ``obs_slices``):

    | part | size | content |
    |---|---|---|
    | ``answer`` | K | the API's answer for the candidate (probabilities by default; one-hot, top-k or rounded by ``output``) |
    | ``label`` | K | one-hot true label of the candidate |
    | ``rounds_left`` | 1 | fraction of the episode's candidates still to come, counting the current one |

    After the last guess the observation is all zeros.

    ## Rewards

    ``reward="correct"`` (default): 1 for a correct guess (score > 0 for a member, <= 0 for a
    non-member), 0 otherwise. ``reward="log"``: the log score ``log p + log 2`` of the
    probability ``p = (score + 1) / 2`` (clipped to [0.01, 0.99]) given to the truth, so a
    score of 0 earns 0. Rewards reveal the truth about candidates already judged: train
    learned attackers knowing that the test is on the episode metrics, not on memory.

    ## Starting State

    A fresh candidate drawn from the copy's generator; the victim and its API are fixed
    for the env's life (the API's ``noise`` defense draws from the copy's generator).

    ## Episode End

    Terminates after ``rounds`` guesses. No truncation.

    ## Info

    Every step, over the episode's guesses so far: ``accuracy``, ``advantage`` (TPR - FPR,
    Yeom et al. 2018), ``tpr_at_1_fpr`` (TPR at FPR <= 1% ranking by score, Carlini et al.
    2022; noisy with few rounds: pool scores over episodes with :func:`collect_scores` and
    :func:`membership_metrics`), ``tpr``, ``fpr``, ``guesses``.

    ## Arguments

    * ``victim``: ``"regularized"``, ``"standard"`` (default), ``"overfit"`` or ``"dp"``
      (DP-SGD); ``dataset``: ``"digits"``.
    * ``output``: ``"probabilities"`` (default), ``"label"``, ``"top_k"`` or ``"rounded"``;
      ``top_k`` (3), ``decimals`` (2).
    * ``defense``: ``"none"``, ``"rounding"`` or ``"noise"`` (``noise_scale``, 0.1).
    * ``rounds``: candidates per episode (100); ``member_prob`` (0.5).
    * ``action``: ``"score"`` or ``"binary"``; ``reward``: ``"correct"`` or ``"log"``.

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        victim: str = "standard",
        dataset: str = "digits",
        output: str = "probabilities",
        top_k: int = 3,
        decimals: int = 2,
        defense: str = "none",
        noise_scale: float = 0.1,
        rounds: int = 100,
        member_prob: float = 0.5,
        action: str = "score",
        reward: str = "correct",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.victim_name = check_choice("victim", victim, VICTIMS)
        check_choice("dataset", dataset, ("digits",))
        self.output = check_choice("output", output, OUTPUTS)
        self.defense = check_choice("defense", defense, MI_DEFENSES)
        self.rounds = check_positive("rounds", rounds, integer=True)
        self.member_prob = check_number("member_prob", member_prob, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        self.action_kind = check_choice("action", action, ACTIONS)
        self.reward_kind = check_choice("reward", reward, REWARDS)
        self.recipe = VICTIM_RECIPES[victim]
        self.api = ModelAPI(load_victim(victim, dataset), dataset=dataset, output=output, top_k=top_k, decimals=decimals,
                            defense=defense, noise_scale=noise_scale)
        split = membership_split(dataset)
        self.pool = split["pool"]  # the attacker's own data
        # the referee's view: never in observations or info
        self._x = {True: split["members"][0], False: split["nonmembers"][0]}
        self._y = {True: split["members"][1], False: split["nonmembers"][1]}
        self.K = K = self.api.num_classes
        self.d = self.api.d
        self.single_observation_space, self.obs_slices = flat_box([("answer", K, 0.0, 1.0), ("label", K, 0.0, 1.0), ("rounds_left", 1, 0.0, 1.0)])
        self.obs_dim = 2 * K + 1
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32) if action == "score" else spaces.Discrete(2)
        n = self.num_envs
        self.t = np.zeros(n, np.int64)
        self.cand_member = np.zeros(n, bool)
        self.cand_index = np.zeros(n, np.int64)
        self.scores = np.zeros((n, self.rounds), np.float64)
        self.members = np.zeros((n, self.rounds), bool)
        self.metrics = {k: np.zeros(n) for k in ("accuracy", "advantage", "tpr_at_1_fpr", "tpr", "fpr")}
        self.clients = [f"copy-{i}" for i in range(n)]
        self.last_answer = np.zeros((n, K), np.float32)  # the API's answer on the current candidate (for the picture)
        self.last_label = np.zeros(n, np.int64)

    # ------------------------------------------------------------ helpers
    def _draw(self, idx: np.ndarray) -> np.ndarray:
        """Draw new candidates for copies ``idx`` and return their observations."""
        b = len(idx)
        n_mem, n_non = len(self._y[True]), len(self._y[False])
        members, ks = [], []
        for i in idx:  # cheap per-copy draws from the copy's own generator
            rng = self.rngs[i]
            member = bool(rng.random() < self.member_prob)
            members.append(member)
            ks.append(int(rng.integers(n_mem if member else n_non)))
        member, k = np.array(members, bool), np.array(ks, np.int64)
        self.cand_member[idx], self.cand_index[idx] = member, k
        km, kn = np.minimum(k, n_mem - 1), np.minimum(k, n_non - 1)
        x = np.where(member[:, None], self._x[True][km], self._x[False][kn]).astype(np.float32, copy=False)
        y = np.where(member, self._y[True][km], self._y[False][kn])
        ans = self.api.query_many(x[:, None], [self.clients[i] for i in idx], [self.rngs[i] for i in idx])
        obs = np.zeros((b, self.obs_dim), np.float32)
        obs[:, self.obs_slices["answer"]] = ans.outputs[:, 0]
        self.last_answer[idx] = ans.outputs[:, 0]
        self.last_label[idx] = y
        obs[np.arange(b), self.K + y] = 1.0
        obs[:, self.obs_slices["rounds_left"]] = ((self.rounds - self.t[idx]) / self.rounds)[:, None]
        np.clip(obs, 0.0, 1.0, out=obs)
        return obs

    def _info(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        info = {k: v[idx].copy() for k, v in self.metrics.items()}
        info["guesses"] = self.t[idx].copy()
        return info

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        self.t[idx] = 0
        self.scores[idx] = 0.0
        self.members[idx] = False
        for v in self.metrics.values():
            v[idx] = 0.0
        return self._draw(idx), self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        b = len(idx)
        if self.action_kind == "score":
            score = np.asarray(actions, np.float64).reshape(b)
        else:
            score = 2.0 * np.asarray(actions, np.float64).reshape(b) - 1.0
        member = self.cand_member[idx]
        if self.reward_kind == "correct":
            reward = ((score > 0) == member).astype(np.float64)
        else:
            p = np.clip((score + 1.0) / 2.0, _P_CLIP, 1.0 - _P_CLIP)
            reward = np.log(np.where(member, p, 1.0 - p)) + math.log(2.0)
        t = self.t[idx]
        self.scores[idx, t] = score
        self.members[idx, t] = member
        self.t[idx] = t + 1
        valid = np.arange(self.rounds)[None] < self.t[idx][:, None]
        for k, v in _batched_metrics(self.scores[idx], self.members[idx], valid).items():
            self.metrics[k][idx] = v
        terminated = self.t[idx] >= self.rounds
        obs = np.zeros((b, self.obs_dim), np.float32)
        go = np.flatnonzero(~terminated)
        if len(go):
            obs[go] = self._draw(idx[go])
        return obs, reward, terminated, np.zeros(b, bool), self._info(idx)

    def render_ansi(self, i: int) -> str:
        m = self.metrics
        return (
            f"victim {self.victim_name} ({self.output}, defense {self.defense}): guess {self.t[i]}/{self.rounds} "
            f"accuracy {m['accuracy'][i]:.3f} advantage {m['advantage'][i]:+.3f} TPR@1%FPR {m['tpr_at_1_fpr'][i]:.3f}"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """The candidate and the API's answer on it (query and answer), and the attacker's scores so far, members against non-members."""
        from deploy_envs.core.rendering import PALETTE, image_of, no_ticks, sketch

        sk = sketch(self, size=(600, 240), grid=(1, 3), width_ratios=(0.8, 1, 1.5), margins={"left": 0.03, "wspace": 0.3, "bottom": 0.17, "top": 0.76})
        m = self.metrics
        ax_x, ax_a, ax_s = sk.begin(f"MembershipInference: victim {self.victim_name} ({self.output}, defense {self.defense}), guess {self.t[i]}/{self.rounds}\n"
                                    f"accuracy {m['accuracy'][i]:.2f}, advantage {m['advantage'][i]:+.2f}, TPR@1%FPR {m['tpr_at_1_fpr'][i]:.2f}", fontsize=8)
        member = bool(self.cand_member[i])
        k = int(self.cand_index[i])
        xs = self._x[member]
        x = xs[min(k, len(xs) - 1)]
        ax_x.imshow(image_of(x), cmap="gray", vmin=0, vmax=1)
        ax_x.set_title(f"candidate, label {self.last_label[i]}\n(hidden: {'member' if member else 'non-member'})", fontsize=7)
        no_ticks(ax_x)
        ax_a.bar(np.arange(self.K), self.last_answer[i], color=[PALETTE["orange"] if c == self.last_label[i] else PALETTE["blue"] for c in range(self.K)])
        ax_a.set_ylim(0, 1)
        ax_a.set_xticks(np.arange(self.K))
        ax_a.set_title("API answer", fontsize=8)
        t = int(self.t[i])
        sc, mem = self.scores[i, :t], self.members[i, :t]
        bins = np.linspace(-1, 1, 21)
        for sel, name, colour in ((mem, "members", PALETTE["red"]), (~mem, "non-members", PALETTE["blue"])):
            counts, _ = np.histogram(sc[sel], bins)
            ax_s.stairs(counts, bins, color=colour, label=f"{name} ({int(sel.sum())})", fill=False, linewidth=1.5)
        ax_s.axvline(0.0, color=PALETTE["black"], ls="--", lw=1)
        ax_s.set_xlim(-1, 1)
        ax_s.set_xlabel("attacker's score (> 0: member)", fontsize=7)
        ax_s.set_title("scores so far", fontsize=8)
        ax_s.legend(fontsize=6, loc="upper left")
        for ax in (ax_a, ax_s):
            ax.tick_params(labelsize=7)
        return sk.finish()


# ------------------------------------------------------------ pooled scores
def collect_scores(agent: Any, *, episodes: int = 10, seed: int = 0, num_envs: int | None = None,
                   env_kwargs: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run ``agent`` for ``episodes`` episodes of ``MembershipInference-v0`` and return all its scores and the truth.

    The truth is read from the env's referee state (``core``), not from anything the agent
    sees. Pass the result to :func:`membership_metrics` for pooled TPR at 1% FPR.
    """
    episodes = check_positive("episodes", episodes, integer=True)
    n = min(episodes, 16) if num_envs is None else check_positive("num_envs", num_envs, integer=True)
    venv = gym.make_vec("deploy_envs/MembershipInference-v0", num_envs=n, **dict(env_kwargs or {}))
    core = venv.unwrapped.core
    quota = np.full(n, episodes // n, np.int64)
    quota[: episodes % n] += 1
    done_count = np.zeros(n, np.int64)
    scores, members = [], []
    try:
        agent.setup(venv)
        obs, _ = venv.reset(seed=seed)
        start = np.ones(n, bool)
        while (done_count < quota).any():
            obs, _, term, trunc, _ = venv.step(agent.act(obs, start))
            done = term | trunc
            for i in np.flatnonzero(done):  # NEXT_STEP autoreset: the finished episode is intact until the next step
                if done_count[i] < quota[i]:
                    scores.append(core.scores[i, : core.t[i]].copy())
                    members.append(core.members[i, : core.t[i]].copy())
                done_count[i] += 1
            start = done
    finally:
        venv.close()
    return np.concatenate(scores), np.concatenate(members)

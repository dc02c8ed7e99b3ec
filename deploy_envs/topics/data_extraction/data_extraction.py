"""``deploy_envs/DataExtraction-v0``: extract a canary's secret from a language model by searching its likelihood."""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.topics.data_extraction.lm import (
    CANARY_NAMES,
    DIGIT_TOKENS,
    SECRET_LENGTH,
    canary_prefix,
    canary_secrets,
)
from deploy_envs.topics.data_extraction.victims import VICTIM_RECIPES, VICTIMS, load_victim

GRANULARITIES = ("next_char", "sequence")
_SLOT_FEATURES = ("valid", "depth", "prob", "per_digit_prob")


class LanguageModelAPI:
    """Query access to a victim language model, with per-copy query accounting.

    ``granularity="next_char"``: a query returns the next-character distribution after a
    text (one query answers the 10 digit probabilities). ``"sequence"``: a query returns
    the log-likelihood of one whole text, so learning the 10 continuations of a prefix
    takes 10 queries. Either way the answer holds only probabilities, never weights,
    hidden states or gradients. :meth:`digit_logprobs` answers many copies' prefixes
    with one batched pass through the model.
    """

    CACHE_SIZE = 50_000
    """Hidden states kept (about 0.5 kB each); the cache is emptied when it is full."""

    def __init__(self, model, granularity: str = "next_char", canaries: int = len(CANARY_NAMES)) -> None:
        self.model = model
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        self.cost_per_expansion = 1 if granularity == "next_char" else 10
        with torch.no_grad():
            self._h0 = torch.stack([model.prefix_state(canary_prefix(i)) for i in range(canaries)])
        # the model's hidden state after (canary, digits) for prefixes already answered: an expansion
        # then needs one GRU step from its parent's state instead of re-reading all its digits
        self._cache: dict[tuple[int, int, int], torch.Tensor] = {}

    @staticmethod
    def _keys(canary: np.ndarray, digits: np.ndarray, depth: np.ndarray) -> list[tuple[int, int, int]]:
        n = digits.shape[1]
        value = (np.asarray(digits, np.int64) * 10 ** np.arange(n - 1, -1, -1)).sum(1) // 10 ** (n - np.asarray(depth))
        return list(zip(np.asarray(canary).tolist(), np.asarray(depth).tolist(), value.tolist()))

    @torch.no_grad()
    def digit_logprobs(self, canary: np.ndarray, digits: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """``log p(next digit | canary prefix + digits[:depth])`` ``(B, 10)`` for ``B`` prefixes, in one batch."""
        canary, digits, depth = np.asarray(canary, np.int64), np.asarray(digits, np.int64), np.asarray(depth)
        b = len(canary)
        keys = self._keys(canary, digits, depth)
        h = self._h0[torch.from_numpy(canary)].clone()
        one, full = [], []  # one GRU step from a cached parent / every digit from the canary prefix
        parents = []
        for j, (c, d, v) in enumerate(keys):
            if d == 0:
                continue
            hit = self._cache.get((c, d, v))
            if hit is not None:
                h[j] = hit
                continue
            parent = self._cache.get((c, d - 1, v // 10))
            if parent is not None:
                one.append(j)
                parents.append(parent)
            else:
                full.append(j)
        tokens = torch.from_numpy(DIGIT_TOKENS[digits])
        if one:
            rows = torch.tensor(one)
            h[rows] = self.model.step(torch.stack(parents), tokens[rows, torch.from_numpy(depth[one] - 1)])
        if full:
            rows = np.array(full)
            for t in range(int(depth[rows].max())):
                go = torch.from_numpy(rows[depth[rows] > t])
                h[go] = self.model.step(h[go], tokens[go, t])
        if len(self._cache) + b > self.CACHE_SIZE:
            self._cache.clear()
        for j in range(b):
            self._cache[keys[j]] = h[j].clone()
        return self.model.digit_logprobs(h).numpy()


class DataExtractionCore(BatchedCore):
    """## Description

    Training-data extraction (Carlini, Liu, Erlingsson, Kos, Song 2019, "The Secret Sharer:
    Evaluating and Testing Unintended Memorization in Neural Networks", USENIX Security).
    A character-level GRU language model was trained on templated records into which
    canaries ``"the pin of <name> is <6 digits>."`` were inserted (none, once, 4 or 16
    times each; or 16 times with DP-SGD: see
    :mod:`deploy_envs.topics.data_extraction.victims`). Each episode targets one canary:
    the attacker knows its prefix (``"the pin of carol is "``) and searches the digit tree
    for the secret through the model's query API, within a query budget, then submits one
    complete candidate. The attacker holds a *frontier* of candidate prefixes, each with
    the model's log-likelihood of its digits; the frontier starts as the empty prefix.

    The model answers every copy's query in one batched pass.

    ## Action Space

    ``Discrete(2 * slots)`` over the ``slots`` most likely frontier prefixes (as observed,
    most likely first). Action ``k < slots`` *selects* prefix ``k``: a prefix shorter than
    the secret is expanded (one query under ``granularity="next_char"``, ten under
    ``"sequence"``) into its ten one-digit continuations, which join the frontier; a
    complete candidate (6 digits) is submitted, which ends the episode. Action
    ``slots + k`` *discards* prefix ``k`` (no query; beam search prunes this way). Choosing
    an empty slot wastes one query. The frontier keeps at most ``capacity`` prefixes
    (the least likely are dropped).

    ## Observation Space

    A flat ``Box(0, 1, (4 * slots + 11,), float32)`` (see ``obs_slices``):

    | part | size | content |
    |---|---|---|
    | ``slots`` | 4 x slots | per slot: 1 if it holds a prefix, its length / 6, its likelihood ``p(prefix digits)``, its per-digit likelihood ``p^(1/length)`` (1 for the empty prefix); zeros for an empty slot |
    | ``answer`` | 10 | the last answer: probabilities of the ten digits after the last expanded prefix |
    | ``budget_left`` | 1 | fraction of the query budget left |

    ## Rewards

    ``1/6`` per digit of the submitted candidate that equals the secret's digit at its
    position (1 for the exact secret), minus ``query_cost`` per query.

    ## Starting State

    The canary is drawn from the copy's generator (or fixed by ``canary``); the frontier
    holds the empty prefix; the budget is full.

    ## Episode End

    Terminates when a complete candidate is submitted, or when the budget cannot pay for
    another expansion (the most likely complete candidate on the frontier, if any, is then
    submitted), or when the frontier is empty. No truncation.

    ## Info

    ``queries`` (spent), ``submitted``, ``success`` (the submitted candidate is the secret),
    ``digits_recovered`` (positions right), ``canary`` (index of the target). The secret
    itself never appears.

    ## Arguments

    * ``victim``: ``"none"``, ``"x1"``, ``"x4"``, ``"x16"`` (default) or ``"dp"``.
    * ``canary``: index 0-3 of the target canary, or ``None`` (default) to draw one per episode.
    * ``query_budget``: queries per episode (100).
    * ``granularity``: ``"next_char"`` (default) or ``"sequence"``.
    * ``slots``: prefixes observed and selectable (32); ``capacity``: frontier size (512).
    * ``query_cost``: reward cost per query (0.002).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        victim: str = "x16",
        canary: int | None = None,
        query_budget: int = 100,
        granularity: str = "next_char",
        slots: int = 32,
        capacity: int = 512,
        query_cost: float = 0.002,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.victim_name = check_choice("victim", victim, VICTIMS)
        n_can = VICTIM_RECIPES[victim].canaries
        if canary is not None:
            check_number("canary", canary, low=0, high=n_can - 1, integer=True)
        self.canary_choice = canary
        self.query_budget = check_positive("query_budget", query_budget, integer=True)
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        self.slots = check_number("slots", slots, low=2, high=256, integer=True)
        self.capacity = check_number("capacity", capacity, low=self.slots, high=1 << 16, integer=True)
        self.query_cost = check_number("query_cost", query_cost, low=0.0, high=1.0)
        self.api = LanguageModelAPI(load_victim(victim), granularity, n_can)
        self.n = SECRET_LENGTH
        self._secrets = canary_secrets(n_can)  # the referee's: never observed
        K = self.slots
        self.single_observation_space, self.obs_slices = flat_box(
            [("slots", 4 * K, 0.0, 1.0), ("answer", 10, 0.0, 1.0), ("budget_left", 1, 0.0, 1.0)]
        )
        self.single_action_space = spaces.Discrete(2 * K)
        B, C = self.num_envs, self.capacity
        self.canary = np.zeros(B, np.int64)
        self.f_digits = np.zeros((B, C, self.n), np.int8)
        self.f_depth = np.zeros((B, C), np.int64)
        self.f_lp = np.full((B, C), -np.inf)
        self.queries = np.zeros(B, np.int64)
        self.answer = np.zeros((B, 10), np.float32)
        self.submitted = np.zeros(B, bool)
        self.success = np.zeros(B, bool)
        self.recovered = np.zeros(B, np.int64)
        self.guess = np.full((B, self.n), -1, np.int64)

    # ------------------------------------------------------------ helpers
    def _obs(self, idx: np.ndarray) -> np.ndarray:
        K = self.slots
        lp, depth = self.f_lp[idx, :K], self.f_depth[idx, :K]
        valid = np.isfinite(lp)
        safe = np.where(valid, lp, 0.0)
        feats = np.zeros((len(idx), K, 4), np.float32)
        feats[..., 0] = valid
        feats[..., 1] = np.where(valid, depth / self.n, 0.0)
        feats[..., 2] = np.where(valid, np.exp(safe), 0.0)
        feats[..., 3] = np.where(valid, np.exp(safe / np.maximum(depth, 1)), 0.0)
        obs = np.zeros((len(idx), self.single_observation_space.shape[0]), np.float32)
        obs[:, self.obs_slices["slots"]] = feats.reshape(len(idx), -1)
        obs[:, self.obs_slices["answer"]] = self.answer[idx]
        obs[:, self.obs_slices["budget_left"]] = ((self.query_budget - self.queries[idx]) / self.query_budget)[:, None]
        return np.clip(obs, 0.0, 1.0)

    def _info(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "queries": self.queries[idx].copy(),
            "submitted": self.submitted[idx].copy(),
            "success": self.success[idx].copy(),
            "digits_recovered": self.recovered[idx].copy(),
            "canary": self.canary[idx].copy(),
        }

    def _sort(self, idx: np.ndarray) -> None:
        order = np.argsort(-self.f_lp[idx], axis=1, kind="stable")
        rows = idx[:, None]
        self.f_lp[idx] = self.f_lp[rows, order]
        self.f_depth[idx] = self.f_depth[rows, order]
        self.f_digits[idx] = self.f_digits[rows, order]

    def _submit(self, idx: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Submit the complete candidates at ``slot`` of copies ``idx``; return the digits right."""
        guess = self.f_digits[idx, slot].astype(np.int64)
        right = (guess == self._secrets[self.canary[idx]]).sum(1)
        self.guess[idx] = guess
        self.submitted[idx] = True
        self.recovered[idx] = right
        self.success[idx] = right == self.n
        return right

    # -------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        if options:
            raise ValueError(f"options={options!r}: DataExtraction-v0 takes no reset options")
        if self.canary_choice is None:
            n_can = len(self._secrets)
            self.canary[idx] = [int(self.rngs[i].integers(n_can)) for i in idx]
        else:
            self.canary[idx] = self.canary_choice
        self.f_lp[idx] = -np.inf
        self.f_lp[idx, 0] = 0.0
        self.f_depth[idx] = 0
        self.f_digits[idx] = 0
        self.queries[idx] = 0
        self.answer[idx] = 0.0
        self.submitted[idx] = False
        self.success[idx] = False
        self.recovered[idx] = 0
        self.guess[idx] = -1
        return self._obs(idx), self._info(idx)

    # --------------------------------------------------------------- step
    def step_indices(self, idx, actions):
        K, n, cost = self.slots, self.n, self.api.cost_per_expansion
        a = np.asarray(actions, np.int64).reshape(len(idx))
        slot, discard = a % K, a >= K
        valid = np.isfinite(self.f_lp[idx, slot])
        spent = np.zeros(len(idx), np.int64)
        reward = np.zeros(len(idx))
        # an empty slot wastes one query
        spent[~valid] = 1
        # discards: no query
        d = np.flatnonzero(valid & discard)
        if len(d):
            self.f_lp[idx[d], slot[d]] = -np.inf
        depth = self.f_depth[idx, slot]
        # submissions
        s = np.flatnonzero(valid & ~discard & (depth >= n))
        if len(s):
            reward[s] += self._submit(idx[s], slot[s]) / n
        # expansions (one batched pass for all expanding copies)
        e = np.flatnonzero(valid & ~discard & (depth < n))
        e = e[self.queries[idx[e]] + cost <= self.query_budget]
        if len(e):
            ie, se = idx[e], slot[e]
            pdig, pdepth, plp = self.f_digits[ie, se], self.f_depth[ie, se], self.f_lp[ie, se]
            lp = self.api.digit_logprobs(self.canary[ie], pdig, pdepth)
            self.answer[ie] = np.exp(lp).astype(np.float32)
            spent[e] += cost
            self.f_lp[ie, se] = -np.inf
            b, C = len(e), self.capacity
            child_digits = np.repeat(pdig[:, None], 10, 1)
            child_digits[np.arange(b)[:, None], np.arange(10)[None], pdepth[:, None]] = np.arange(10)[None]
            all_lp = np.concatenate([self.f_lp[ie], plp[:, None] + lp], 1)
            all_depth = np.concatenate([self.f_depth[ie], np.repeat(pdepth[:, None] + 1, 10, 1)], 1)
            all_digits = np.concatenate([self.f_digits[ie], child_digits], 1)
            order = np.argsort(-all_lp, axis=1, kind="stable")[:, :C]
            rows = np.arange(b)[:, None]
            self.f_lp[ie], self.f_depth[ie], self.f_digits[ie] = all_lp[rows, order], all_depth[rows, order], all_digits[rows, order]
        if len(d):
            self._sort(idx[d])
        self.queries[idx] += spent
        reward -= self.query_cost * spent
        terminated = self.submitted[idx].copy()
        # out of budget: submit the most likely complete candidate, if any
        broke = np.flatnonzero(~terminated & (self.queries[idx] + cost > self.query_budget))
        for j in broke:
            i = idx[j]
            full = np.flatnonzero(np.isfinite(self.f_lp[i]) & (self.f_depth[i] >= n))
            if len(full):
                reward[j] += self._submit(np.array([i]), full[:1])[0] / n
        empty = ~np.isfinite(self.f_lp[idx, 0])
        terminated |= empty
        terminated[broke] = True
        return self._obs(idx), reward, terminated, np.zeros(len(idx), bool), self._info(idx)

    def render_ansi(self, i: int) -> str:
        lines = [f"victim {self.victim_name}, canary '{canary_prefix(int(self.canary[i]))}______': "
                 f"{self.queries[i]}/{self.query_budget} queries"]
        for k in range(min(self.slots, 8)):
            if not np.isfinite(self.f_lp[i, k]):
                break
            dg = "".join(str(int(x)) for x in self.f_digits[i, k, : self.f_depth[i, k]])
            lines.append(f"  {k:2d} {dg:<6s} log p = {self.f_lp[i, k]:.2f}")
        if self.submitted[i]:
            lines.append(f"  submitted: {self.recovered[i]}/{self.n} digits right")
        return "\n".join(lines)

    def render_rgb(self, i: int) -> np.ndarray:
        """The search so far: the most likely frontier prefixes with their log-likelihoods, and the model's last answer."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(560, 280), grid=(1, 2), width_ratios=(1.5, 1), margins={"left": 0.16, "wspace": 0.3})
        status = f" | submitted: {self.recovered[i]}/{self.n} digits right" if self.submitted[i] else ""
        ax_f, ax_a = sk.begin(f"DataExtraction ({self.victim_name}): '{canary_prefix(int(self.canary[i]))}______', "
                              f"queries {self.queries[i]}/{self.query_budget}{status}", fontsize=8)
        show = min(self.slots, 10)
        lp = self.f_lp[i, :show]
        live = np.isfinite(lp)
        names = ["".join(str(int(x)) for x in self.f_digits[i, k, : self.f_depth[i, k]]).ljust(self.n, "_") for k in range(show)]
        y = np.arange(show)[live]
        ax_f.barh(y, np.exp(lp[live] / np.maximum(self.f_depth[i, :show][live], 1)), color=PALETTE["blue"])
        ax_f.set_yticks(y, [f"{names[k]}  {lp[k]:.1f}" for k in y], fontsize=7, family="monospace")
        ax_f.set_ylim(show - 0.5, -0.5)
        ax_f.set_xlim(0, 1)
        ax_f.set_xlabel("per-digit likelihood", fontsize=8)
        ax_f.set_title("frontier (prefix, log p)", fontsize=8)
        ax_a.bar(np.arange(10), self.answer[i], color=PALETTE["orange"])
        ax_a.set_xticks(np.arange(10))
        ax_a.set_ylim(0, 1)
        ax_a.set_title("last answer: p(next digit)", fontsize=8)
        for ax in (ax_f, ax_a):
            ax.tick_params(labelsize=7)
        return sk.finish()

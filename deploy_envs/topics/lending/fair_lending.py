"""``deploy_envs/FairLending-v0``: a bank lends to groups with FICO score distributions, watched by an auditor."""
from __future__ import annotations


import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.topics.lending.fico import SCORE_MAX, SCORE_MIN, fico_population
from deploy_envs.metrics.fairness import acceptance, gap, gap_info, group_rates, safe_rate, score_moves

ACTION_MODES = ("threshold", "applicant")
OBSERVATIONS = ("histogram", "summary")
CONSTRAINTS = (None, "demographic_parity", "equal_opportunity")
_MID, _HALF = (SCORE_MIN + SCORE_MAX) / 2, (SCORE_MAX - SCORE_MIN) / 2


class FairLendingCore(BatchedCore):
    """## Description

    A bank lends to a population of applicants from groups whose credit scores follow
    the FICO TransRisk distributions (Federal Reserve 2007; used by Hardt et al. 2016
    and Liu et al. 2018), on Liu et al.'s 300..850 scale in 5-point bins (see
    :mod:`deploy_envs.topics.lending.fico`). Each copy holds ``population_size`` people,
    each with a group (drawn with the groups' shares) and a score (drawn from the
    group's distribution). Each step the next ``applicants_per_step`` people (a window
    starting at a random offset) apply; the bank decides on each; an accepted applicant
    repays with the probability the data give for their group and score, the bank earns
    +1 per repaid loan and loses ``loss`` per default, and the borrower's score moves
    +75 on repayment and -150 on default, clipped to 300..850 (Liu et al. 2018), so the
    groups' score distributions drift over time. A rejected applicant's score does not
    change, and the bank never sees whether they would have repaid.

    An auditor inside the env records, per group, the selection rate, the true-positive
    rate (accepted among those who would repay: the auditor knows every applicant's
    potential outcome), the demographic-parity and equal-opportunity gaps and the
    group's mean score, per step and cumulatively, in ``info``. With ``constraint`` set
    the step's gap above ``constraint_tolerance`` is reported as ``cost``.

    ## Action Space

    ``action_mode="threshold"`` (default): ``Box(-1, 1, (G,), float32)``, one score
    threshold per group (in the order of ``groups``) as ``(threshold - 575) / 275``
    (-1 lends to everyone, 1 to no one)
    (:meth:`FairLendingCore.thresholds_to_action` converts and checks scores). With ``randomize=True`` (default)
    the bin containing the threshold is accepted with the fraction of the bin above it,
    i.e. the bank randomizes between the two adjacent thresholds (Hardt et al. 2016's
    post-processing); otherwise a bin is accepted when its centre is at or above the
    threshold. ``action_mode="applicant"``: ``MultiDiscrete([2] * n)``, accept (1) or
    reject (0) each of the ``n = applicants_per_step`` applicants shown in the observation.

    ## Observation Space

    A flat ``Box`` of float32, the concatenation of (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``scores`` | G * obs_bins (histogram) or G * 2 (summary) | [0, 1] | per group: fraction of the group in each of ``obs_bins`` equal score bands of 300..850; or its mean score and standard deviation, as ``(mean - 300) / 550`` and ``std / 275`` |
    | ``totals`` | 5 | see below | fraction of the horizon elapsed [0, 1]; last step's and cumulative profit per applicant [-loss, 1]; cumulative fraction of applicants lent to [0, 1]; cumulative default rate of the loans made [0, 1] |
    | ``applicants`` | n * (1 + G) | [0, 1] | ``applicant`` mode only: the applicants' scores as ``(score - 300) / 550``, then their groups one-hot |

    ## Rewards

    The step's profit per applicant: ``(repaid - loss * defaulted) / applicants_per_step``.

    ## Starting State

    A fresh population drawn from the groups' FICO distributions.

    ## Episode End

    Terminates after ``horizon`` steps (the elapsed fraction is in the observation).

    ## Info

    ``profit`` (this step, not per applicant), ``loans``, ``repaid``, ``defaults``,
    ``cum_profit``; per group ``g`` (lower-case name): ``selection_rate_g``, ``tpr_g``,
    ``cum_selection_rate_g``, ``cum_tpr_g``, ``mean_score_g``, ``score_change_g`` (this
    step) and ``delayed_impact_g`` (mean score now minus at reset); ``dp_gap``,
    ``eo_gap`` (this step) and ``cum_dp_gap``, ``cum_eo_gap`` (over the episode, from
    the cumulative rates); ``cost`` and ``episode_cost`` (its sum so far this episode) when ``constraint`` is set. A rate of a group with
    no applicants (or none who would repay) is reported as 0 and left out of the gaps.
    The TPRs use outcomes the bank never sees: ``info`` is the auditor's channel, not
    an input for the bank. The reset info carries ``mean_score_g``.

    ## Arguments

    * ``groups``: ``"liu"`` (White, Black; default), ``"all"`` (White, Black, Hispanic,
      Asian) or a list of those names. Shares are the groups' sizes in the FICO sample.
    * ``loss``: amount lost per default, >= 0 (default 4; Liu et al. use 4 and 10,
      Hardt et al.'s break-even 0.82 is ``82 / 18``).
    * ``population_size`` (default 1000), ``applicants_per_step`` (default 100, at most
      ``population_size``; equal to it, every person applies once per step, Liu et
      al.'s one-step model).
    * ``horizon``: steps per episode (default 20).
    * ``action_mode``: ``"threshold"`` or ``"applicant"``; ``randomize`` (bool).
    * ``observation``: ``"histogram"`` or ``"summary"``; ``obs_bins``: a divisor of 110 (default 11: 50-point bands).
    * ``constraint``: ``None``, ``"demographic_parity"`` or ``"equal_opportunity"``;
      ``constraint_tolerance`` >= 0 (default 0).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        groups: str | tuple[str, ...] | list[str] = "liu",
        loss: float = 4.0,
        population_size: int = 1000,
        applicants_per_step: int = 100,
        horizon: int = 20,
        action_mode: str = "threshold",
        randomize: bool = True,
        observation: str = "histogram",
        obs_bins: int = 11,
        constraint: str | None = None,
        constraint_tolerance: float = 0.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.population = pop = fico_population(groups)
        self.loss = check_number("loss", loss, low=0.0)
        self.population_size = N = check_positive("population_size", population_size, integer=True)
        self.applicants_per_step = n = check_number("applicants_per_step", applicants_per_step, low=1, high=N, integer=True)
        self.horizon = check_positive("horizon", horizon, integer=True)
        self.action_mode = check_choice("action_mode", action_mode, ACTION_MODES)
        self.randomize = bool(check_choice("randomize", randomize, (True, False)))
        self.observation = check_choice("observation", observation, OBSERVATIONS)
        B = pop.num_bins
        divisors = [d for d in range(1, B + 1) if B % d == 0]
        self.obs_bins = check_choice("obs_bins", obs_bins, divisors)
        self.constraint = check_choice("constraint", constraint, CONSTRAINTS)
        self.constraint_tolerance = check_number("constraint_tolerance", constraint_tolerance, low=0.0, high=1.0)
        self.groups = pop.groups
        self.keys = [g.lower() for g in pop.groups]
        G = self.G = len(pop.groups)
        self.B = B
        self.centers = pop.centers
        self.up, self.down = score_moves(B, float(pop.edges[1] - pop.edges[0]))
        # an applicant's next bin by bin * 3 + outcome (0 rejected, 1 accepted and defaulted, 2 accepted and repaid)
        self._next_bin = np.stack([np.arange(B), self.down, self.up], 1).ravel()
        self._band_starts = np.arange(0, B, B // self.obs_bins)  # the first bin of each observed score band
        self._cdf_flat = (np.cumsum(pop.pmf, 1) + np.arange(G)[:, None]).ravel()
        self._cdf_flat[B - 1 :: B] = np.arange(1, G + 1)  # row g ends exactly at g + 1
        self._cum_shares = np.cumsum(pop.shares)[:-1]
        self._repay_flat = pop.repay.ravel()
        # inverse-CDF lookup: cell c of [0, 1) in 4096 cells maps to one bin unless a bin edge falls inside it
        L = self._cells = 4096
        cell_edges = np.arange(L + 1) / L
        lo = np.stack([np.searchsorted(self._cdf_flat[j * B : (j + 1) * B] - j, cell_edges[:-1], side="right") for j in range(G)])
        hi = np.stack([np.searchsorted(self._cdf_flat[j * B : (j + 1) * B] - j, np.nextafter(cell_edges[1:], 0), side="right") for j in range(G)])
        self._cell_bin = np.where(lo == hi, np.minimum(lo, B - 1), -1)

        per_group = G * (self.obs_bins if observation == "histogram" else 2)
        totals_low = np.array([0.0, -self.loss, -self.loss, 0.0, 0.0], np.float32)
        parts = [("scores", per_group, 0.0, 1.0), ("totals", 5, totals_low, 1.0)]
        if action_mode == "applicant":
            parts.append(("applicants", n * (1 + G), 0.0, 1.0))
        self.single_observation_space, self.obs_slices = flat_box(parts)
        self.obs_dim = self.single_observation_space.shape[0]
        self._obs_low, self._obs_high = self.single_observation_space.low, self.single_observation_space.high
        if action_mode == "threshold":
            self.single_action_space = spaces.Box(-1.0, 1.0, (G,), dtype=np.float32)
        else:
            self.single_action_space = spaces.MultiDiscrete(np.full(n, 2, dtype=np.int64))

        k = self.num_envs
        self.scores = np.zeros((k, N), np.int64)
        self.member_group = np.zeros((k, N), np.int64)
        self.counts = np.zeros((k, G, B), np.int64)
        self.counts0 = np.zeros((k, G, B), np.int64)  # the start of the episode, and the last thresholds (for the picture)
        self.last_threshold = np.full((k, G), np.nan)
        self.score_sum = np.zeros((k, G))
        self.group_size = np.zeros((k, G))
        self.offset = np.zeros(k, np.int64)
        self.t = np.zeros(k, np.int64)
        self.mean0 = np.zeros((k, G))
        self.cum = {name: np.zeros((k, G)) for name in ("applicants", "accepted", "positives", "true_positives")}
        self.totals = {name: np.zeros(k) for name in ("profit", "loans", "defaults", "last_profit", "cost")}
        self._window = np.arange(n)
        self._reset_uniforms = np.empty((k, 2 * N + 1))

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        N, G, B = self.population_size, self.G, self.B
        u = self._reset_uniforms[: len(idx)]  # a kept buffer: a fresh 4 MB array per reset costs page faults
        for j, i in enumerate(idx):  # each copy's draws from its own rng, straight into its row
            self.rngs[i].random(out=u[j])
        # the group of each member: how many cumulative shares its uniform reaches (searchsorted, side="right",
        # written as G - 1 comparisons, which is faster for a handful of groups)
        grp = np.zeros((len(idx), N), np.int64)
        for edge in self._cum_shares:
            grp += u[:, :N] >= edge
        b = self._cell_bin[grp, (u[:, N : 2 * N] * self._cells).astype(np.int64)]
        amb = b < 0  # a bin edge inside the cell: search exactly
        if amb.any():
            b[amb] = np.searchsorted(self._cdf_flat, u[:, N : 2 * N][amb] + grp[amb], side="right") - grp[amb] * B
        b = np.clip(b, 0, B - 1)
        self.scores[idx], self.member_group[idx] = b, grp
        k = len(idx)
        flat = (np.arange(k)[:, None] * G + grp) * B + b
        cnt = np.bincount(flat.ravel(), minlength=k * G * B).reshape(k, G, B)
        self.counts[idx] = cnt
        self.counts0[idx] = cnt
        self.last_threshold[idx] = np.nan
        self.score_sum[idx] = cnt @ self.centers
        self.group_size[idx] = cnt.sum(2)
        self.offset[idx] = (u[:, 2 * N] * N).astype(np.int64)
        self.t[idx] = 0
        self.mean0[idx] = self._mean_scores(idx)
        for arr in (*self.cum.values(), *self.totals.values()):
            arr[idx] = 0.0
        info = {f"mean_score_{g}": self.mean0[idx, j].copy() for j, g in enumerate(self.keys)}
        return self._observe(idx), info

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        N, n, G, B = self.population_size, self.applicants_per_step, self.G, self.B
        k = len(idx)
        full = k == self.num_envs
        ar = np.arange(k)
        win = (self.offset[idx, None] + self._window) % N
        # flat positions of the window in the (copy, member) arrays: np.take/np.put on them
        # are several times faster than the equivalent 2-D fancy indexing
        pos = win + (idx * N)[:, None]
        b = np.take(self.scores, pos)
        g = np.take(self.member_group, pos)
        u = np.empty((k, 2 * n + 1))
        for j, i in enumerate(idx):  # copy i draws only from its own rng
            self.rngs[i].random(out=u[j])
        flat = (ar[:, None] * G + g) * B + b  # (copy, group, bin) of each applicant, flattened
        if self.action_mode == "threshold":
            thresholds = _MID + _HALF * actions.astype(np.float64)
            self.last_threshold[idx] = thresholds
            acc_table = acceptance(self.population.edges, thresholds, self.randomize)
            accepted = u[:, :n] < np.take(acc_table, flat)
        else:
            accepted = np.asarray(actions, dtype=bool)
        would_repay = u[:, n : 2 * n] < np.take(self._repay_flat, g * B + b)
        outcome = np.multiply(b, 3)
        outcome += accepted
        outcome += accepted & would_repay
        new_b = np.take(self._next_bin, outcome)
        np.put(self.scores, pos, new_b)
        sizes = self.group_size if full else self.group_size[idx]
        before = safe_rate(self.score_sum if full else self.score_sum[idx], sizes)
        # the members who changed bin leave their old bin's count and join the new one's, in place
        # (np.add.at takes repeated cells); their score change adds to their group's sum, exactly,
        # since the bin centres are multiples of 0.5
        changed = np.flatnonzero(new_b != b)  # flat positions in the (copy, applicant) arrays; take() beats boolean masks
        b_old, b_new = np.take(b, changed), np.take(new_b, changed)
        cell = np.take(idx * G, changed // n) + np.take(g, changed)  # (copy, group) in the whole core
        counts = self.counts.reshape(-1)
        np.subtract.at(counts, cell * B + b_old, 1)
        np.add.at(counts, cell * B + b_new, 1)
        gained = np.bincount(cell, weights=self.centers[b_new] - self.centers[b_old], minlength=self.num_envs * G)
        self.score_sum += gained.reshape(self.num_envs, G)
        after = safe_rate(self.score_sum if full else self.score_sum[idx], sizes)
        # one count of (copy, group, accepted, would repay) gives every per-group tally of the step
        code = ((flat - b) // B * 2 + accepted) * 2 + would_repay
        tally = np.bincount(code.ravel(), minlength=4 * k * G).reshape(k, G, 2, 2).astype(np.float64)
        step = {
            "applicants": tally.sum((2, 3)),
            "accepted": tally[:, :, 1].sum(2),
            "positives": tally[:, :, :, 1].sum(2),
            "true_positives": tally[:, :, 1, 1],
        }
        for key, v in step.items():
            self.cum[key][idx] += v
        repaid = step["true_positives"].sum(1)
        loans = step["accepted"].sum(1)
        defaults = loans - repaid
        profit = repaid - self.loss * defaults
        self.totals["profit"][idx] += profit
        self.totals["loans"][idx] += loans
        self.totals["defaults"][idx] += defaults
        self.totals["last_profit"][idx] = profit
        self.t[idx] += 1
        self.offset[idx] = (u[:, 2 * n] * N).astype(np.int64)

        c = {key: self.cum[key][idx] for key in self.cum}
        sel, tpr = group_rates(**step)
        csel, ctpr = group_rates(**c)
        info: dict[str, np.ndarray] = {"profit": profit, "loans": loans, "repaid": repaid, "defaults": defaults, "cum_profit": self.totals["profit"][idx].copy()}
        for j, name in enumerate(self.keys):
            info[f"selection_rate_{name}"] = sel[:, j]
            info[f"tpr_{name}"] = tpr[:, j]
            info[f"cum_selection_rate_{name}"] = csel[:, j]
            info[f"cum_tpr_{name}"] = ctpr[:, j]
            info[f"mean_score_{name}"] = after[:, j]
            info[f"score_change_{name}"] = after[:, j] - before[:, j]
            info[f"delayed_impact_{name}"] = after[:, j] - self.mean0[idx, j]
        info.update(gap_info(step, c, self.constraint, self.constraint_tolerance))
        if self.constraint is not None:
            self.totals["cost"][idx] += info["cost"]
            info["episode_cost"] = self.totals["cost"][idx].copy()
        reward = profit / n
        terminated = self.t[idx] >= self.horizon
        return self._observe(idx), reward, terminated, np.zeros(k, bool), info

    # ------------------------------------------------------------- internals
    def _mean_scores(self, idx) -> np.ndarray:
        return safe_rate(self.score_sum[idx], self.group_size[idx])

    def _observe(self, idx) -> np.ndarray:
        k, G = len(idx), self.G
        obs = np.empty((k, self.obs_dim), np.float32)
        s = self.obs_slices
        if self.observation == "histogram":  # sum the integer counts into bands first, then divide
            bands = np.add.reduceat(self.counts[idx], self._band_starts, axis=2)  # twice a reshape-and-sum's speed
            frac = safe_rate(bands, bands.sum(2, keepdims=True))
            obs[:, s["scores"]] = frac.reshape(k, -1)
        else:
            cnt = self.counts[idx].astype(np.float64)
            size = cnt.sum(2, keepdims=True)
            mean = safe_rate(cnt @ self.centers, size[..., 0])
            var = safe_rate(cnt @ self.centers**2, size[..., 0]) - mean**2
            summ = np.stack([np.where(size[..., 0] > 0, (mean - SCORE_MIN) / (SCORE_MAX - SCORE_MIN), 0.0), np.sqrt(np.maximum(var, 0.0)) / 275.0], 2)
            obs[:, s["scores"]] = summ.reshape(k, -1)
        tot = self.totals
        seen = self.t[idx] * self.applicants_per_step
        obs[:, s["totals"]] = np.stack([
            self.t[idx] / self.horizon,
            tot["last_profit"][idx] / self.applicants_per_step,
            safe_rate(tot["profit"][idx], seen),
            safe_rate(tot["loans"][idx], seen),
            safe_rate(tot["defaults"][idx], tot["loans"][idx]),
        ], 1)
        if self.action_mode == "applicant":
            win = (self.offset[idx, None] + self._window) % self.population_size
            b = self.scores[idx[:, None], win]
            grp = self.member_group[idx[:, None], win]
            n = self.applicants_per_step
            part = np.zeros((k, n, 1 + G), np.float32)
            part[:, :, 0] = (self.centers[b] - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
            part[np.arange(k)[:, None], np.arange(n), 1 + grp] = 1.0
            obs[:, s["applicants"]] = np.concatenate([part[:, :, 0], part[:, :, 1:].reshape(k, -1)], 1)
        np.clip(obs, self._obs_low, self._obs_high, out=obs)
        return obs

    def thresholds_to_action(self, thresholds) -> np.ndarray:
        """The action (float32, in [-1, 1]) for per-group ``thresholds`` given as scores in [300, 850]."""
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape[-1:] != (self.G,) or not np.isfinite(t).all() or (t < SCORE_MIN).any() or (t > SCORE_MAX).any():
            raise ValueError(
                f"thresholds={np.asarray(thresholds).tolist()!r} must be {self.G} finite scores (one per group of {list(self.groups)}) "
                f"in [{SCORE_MIN:g}, {SCORE_MAX:g}]"
            )
        return np.clip((t - _MID) / _HALF, -1.0, 1.0).astype(np.float32)

    def applicants(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and groups of the applicants copy ``i`` will see on its next step."""
        win = (self.offset[i] + self._window) % self.population_size
        return self.centers[self.scores[i, win]], self.member_group[i, win]

    # ------------------------------------------------------------- rendering
    def render_ansi(self, i: int) -> str:
        means = safe_rate(self.counts[i] @ self.centers, self.counts[i].sum(1))
        groups = ", ".join(f"{g} mean {m:.1f} ({m - m0:+.1f})" for g, m, m0 in zip(self.groups, means, self.mean0[i]))
        return f"step {self.t[i]}/{self.horizon}: profit {self.totals['profit'][i]:.0f}, loans {self.totals['loans'][i]:.0f}; {groups}"

    def render_rgb(self, i: int) -> np.ndarray:
        """Each group's FICO score distribution (now, and at the start as an outline) with the bank's threshold."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(600, 260), grid=(1, self.G), margins={"left": 0.06, "wspace": 0.2, "bottom": 0.17})
        axes = sk.begin(f"FairLending: step {self.t[i]}/{self.horizon}, profit {self.totals['profit'][i]:+.0f}, "
                        f"loans {self.totals['loans'][i]:.0f}, defaults {self.totals['defaults'][i]:.0f}", fontsize=9)
        means = safe_rate(self.counts[i] @ self.centers, self.counts[i].sum(1))
        starts = np.arange(0, self.B, max(1, self.B // 22))  # about 22 bands, so a small population still shows a shape
        edges = np.append(self.population.edges[starts], self.population.edges[-1])
        cur = np.add.reduceat(self.counts[i], starts, axis=1) / np.maximum(self.counts[i].sum(1, keepdims=True), 1)
        first = np.add.reduceat(self.counts0[i], starts, axis=1) / np.maximum(self.counts0[i].sum(1, keepdims=True), 1)
        colours = (PALETTE["blue"], PALETTE["red"], PALETTE["green"], PALETTE["purple"])
        top = max(1e-12, float(cur.max()), float(first.max()))
        for j, ax in enumerate(axes):
            now, start = cur[j], first[j]
            ax.stairs(now, edges, color=colours[j % 4], fill=True, alpha=0.6, label="now")
            ax.stairs(start, edges, color=PALETTE["black"], lw=1, label="start")
            tau = self.last_threshold[i, j]
            if np.isfinite(tau):
                ax.axvline(tau, color=PALETTE["green"], lw=2, label=f"threshold {tau:.0f}")
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(0, top * 1.25)
            ax.set_title(f"{self.groups[j]}: mean {means[j]:.0f} ({means[j] - self.mean0[i, j]:+.1f})", fontsize=8)
            ax.set_xlabel("credit score (fraction of the group)", fontsize=7)
            ax.legend(fontsize=6, loc="upper left")
            ax.tick_params(labelsize=7)
        return sk.finish()

"""``deploy_envs/LendingMarket-v0``: a bank, strategic applicant groups and a fairness regulator.

Build it with ``deploy_envs.make_game("deploy_envs/LendingMarket-v0")``.
The game is written once as :class:`LendingMarketCore`, a batched core whose state has a
leading batch dimension (every copy's population is one row of an array); the PettingZoo
Its PettingZoo view, ``make_game("deploy_envs/LendingMarket-v0")``, is that core at batch size 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.metrics.fairness import gap, safe_rate, score_moves
from deploy_envs.topics.lending.fico import SCORE_MAX, SCORE_MIN, fico_population

FAIRNESS = ("demographic_parity", "equal_opportunity")
_MID, _HALF, _RANGE = (SCORE_MIN + SCORE_MAX) / 2, (SCORE_MAX - SCORE_MIN) / 2, SCORE_MAX - SCORE_MIN
#: default gaming cost (loan values per 100 points) of the groups with the highest and lowest mean score
COST_LOW, COST_HIGH = 0.5, 1.0


def default_gaming_costs(mean_scores: np.ndarray) -> np.ndarray:
    """Per-group cost of raising the observed score by 100 points: 0.5 for the group with the
    highest mean score, 1.0 for the lowest, linear in the mean score in between."""
    m = np.asarray(mean_scores, dtype=np.float64)
    span = m.max() - m.min()
    frac = (m.max() - m) / span if span > 0 else np.zeros_like(m)
    return COST_LOW + (COST_HIGH - COST_LOW) * frac


class LendingMarketCore(GameCore):
    """## Description

    A repeated lending market with three kinds of players (Hardt, Megiddo, Papadimitriou
    and Wootters 2016, "Strategic Classification"; Milli, Miller, Dragan and Hardt 2019,
    "The Social Cost of Strategic Classification"; Hu, Immorlica and Vaughan 2019, "The
    Disparate Effects of Strategic Manipulation"; score dynamics of Liu et al. 2018):

    * the **bank** sets one score threshold per group each round and lends to every
      applicant whose *observed* score is at or above it; a loan repays with the
      probability the FICO data give for the applicant's *true* score and group
      (:mod:`deploy_envs.topics.lending.fico`), earning +1, or defaults, losing ``loss``;
    * one **applicant population per group** chooses how far (``gaming budget``, up to
      ``max_gaming`` points) its members will raise their observed score: a member whose
      true score is below the group's threshold by at most the budget games it, reporting
      exactly the threshold and paying ``gaming_costs[g]`` loan values per 100 points
      moved. Gaming changes what the bank sees, not the chance of repaying (manipulation,
      not improvement), and the cost differs by group: by default the group with the
      lower scores pays twice as much per point (``0.5`` vs ``1.0``), the situation in
      which Milli et al. and Hu et al. show that a bank robust to gaming puts a higher
      social burden on the disadvantaged group;
    * the **regulator** sets a tolerance on a fairness gap (``fairness``: the
      demographic-parity gap of selection rates, or the equal-opportunity gap of
      true-positive rates, measured on the round's true outcomes) and a fine per applicant
      per unit of gap above it; each round is audited with probability
      ``audit_probability``, and an audited bank pays the fine.

    Every member of the population (``population_size`` people, groups drawn with the FICO
    shares) applies every round. A borrower's true score moves +75 on repayment and -150 on
    default (clipped to 300..850; Liu et al. 2018), so the groups' distributions drift.
    All players move simultaneously; each sees last round's public outcome.

    ## Agents

    ``"bank"``, ``"applicants_<group>"`` for each group (lower-case names, e.g.
    ``"applicants_white"``, ``"applicants_black"``) and ``"regulator"``; all act every round.

    ## Action Spaces

    * bank: ``Box(-1, 1, (G,), float32)``, per-group thresholds as ``(threshold - 575) / 275``
      (as in ``FairLending-v0``; :meth:`LendingMarketCore.thresholds_to_action` converts).
      An applicant is accepted when the centre of its (possibly gamed) 5-point score bin is
      at or above the threshold.
    * applicants_g: ``Box(0, 1, (1,), float32)``, the gaming budget as a fraction of ``max_gaming``.
    * regulator: ``Box(0, 1, (2,), float32)``: the gap tolerance (in gap units, 0..1) and
      the fine as a fraction of ``max_fine``.

    ## Observation Spaces

    Flat ``Box`` es of float32 (``core.obs_slices[agent]`` names the parts). Every agent
    sees the public part; "last round" parts are zeros in round 0.

    | part | who | size | range | content |
    |---|---|---|---|---|
    | ``round`` | all | 1 | [0, 1] | rounds played / ``rounds`` |
    | ``thresholds`` | all | G | [0, 1] | last round's thresholds as ``(t - 300) / 550`` |
    | ``gaming`` | all | G | [0, 1] | last round's gaming budgets (fractions of ``max_gaming``) |
    | ``regulation`` | all | 2 | [0, 1] | last round's tolerance and fine fraction |
    | ``selection_rate`` | all | G | [0, 1] | last round's fraction of each group lent to |
    | ``observed_scores`` | bank | G * obs_bins | [0, 1] | per group, fraction of last round's applicants per band of *observed* score (before round 0: true scores) |
    | ``default_rate`` | bank | G | [0, 1] | last round's defaults / loans per group |
    | ``true_scores`` | applicants_g | obs_bins | [0, 1] | fraction of the group per band of true score, now |
    | ``mean_scores`` | regulator | G | [0, 1] | each group's mean true score as ``(m - 300) / 550`` |
    | ``tpr`` | regulator | G | [0, 1] | last round's true-positive rate per group |
    | ``gaps`` | regulator | 2 | [0, 1] | last round's demographic-parity and equal-opportunity gaps |
    | ``audited`` | regulator | 1 | [0, 1] | 1 if last round was audited |

    ## Rewards

    Per round, all per person of the population:

    * bank: ``(repaid - loss * defaulted) / population_size - fine``, with ``fine =
      audited * fine_rate * max(gap - tolerance, 0)``;
    * applicants_g: ``(loan_value * loans_g - gaming_cost_g) / size_g``, the mean over
      the group's members of the value of the loans they get minus what they paid to game;
    * regulator: ``welfare_weight * welfare - gap_weight * gap`` with ``welfare`` the
      bank's profit plus all applicants' utility, per person (the fine is a transfer and
      not counted).

    ## Starting State

    A fresh population drawn from the groups' FICO distributions; no last round.

    ## Episode End

    After ``rounds`` rounds all agents are **terminated** (the round counter is observed).

    ## Info

    Per agent, the same keys: ``round``, ``profit`` (not per person), ``fine`` (per
    person), ``audited``, ``welfare``, ``dp_gap``, ``eo_gap``, ``gap`` (the regulated one),
    ``tolerance``, ``fine_rate``, and per group ``g``: ``threshold_g``, ``gaming_budget_g``
    (points), ``selection_rate_g``, ``tpr_g``, ``gamers_g`` (fraction of the group that
    gamed), ``gaming_cost_g`` (mean per member), ``burden_g`` (mean gaming cost paid by the
    group's members who got a loan and would repay: Milli et al.'s social burden),
    ``mean_score_g`` and ``delayed_impact_g`` (mean true score now minus at reset). Reset
    infos carry ``round`` and ``mean_score_g``.

    ## Arguments

    * ``groups``: ``"liu"`` (White, Black; default), ``"all"`` or a list of FICO group names.
    * ``loss``: amount lost per default, >= 0 (default 4, as Liu et al.).
    * ``population_size``: people per copy (integer >= 2, default 500); ``rounds`` (>= 1, default 10).
    * ``gaming_costs``: per-group cost per 100 points (> 0), default 0.5 for the group with
      the highest mean score rising linearly to 1.0 for the lowest (:func:`default_gaming_costs`).
    * ``max_gaming``: largest gaming budget in points, in (0, 550] (default 150).
    * ``loan_value``: an applicant's utility of a loan, > 0 (default 1).
    * ``fairness``: ``"demographic_parity"`` (default) or ``"equal_opportunity"``.
    * ``max_fine``: fine per person per unit of gap at full regulator action, >= 0 (default 5).
    * ``audit_probability``: in [0, 1] (default 1).
    * ``welfare_weight``, ``gap_weight``: the regulator's weights, >= 0 (default 1 and 1).
    * ``obs_bins``: score bands in the histograms, a divisor of 110 (default 11: 50-point bands).

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
        population_size: int = 500,
        rounds: int = 10,
        gaming_costs: Sequence[float] | None = None,
        max_gaming: float = 150.0,
        loan_value: float = 1.0,
        fairness: str = "demographic_parity",
        max_fine: float = 5.0,
        audit_probability: float = 1.0,
        welfare_weight: float = 1.0,
        gap_weight: float = 1.0,
        obs_bins: int = 11,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.population = pop = fico_population(groups)
        self.loss = check_number("loss", loss, low=0.0)
        self.population_size = N = check_number("population_size", population_size, low=2, integer=True)
        self.rounds = check_number("rounds", rounds, low=1, integer=True)
        G = self.G = len(pop.groups)
        if gaming_costs is None:
            self.gaming_costs = default_gaming_costs(pop.mean_scores())
        else:
            arr = np.asarray(gaming_costs, dtype=np.float64) if not isinstance(gaming_costs, str) else np.array([np.nan])
            if arr.shape != (G,) or not np.isfinite(arr).all() or (arr <= 0).any():
                raise ValueError(f"gaming_costs={gaming_costs!r} must be {G} finite positive costs, one per group of {list(pop.groups)}")
            self.gaming_costs = arr
        self.max_gaming = check_number("max_gaming", max_gaming, low=0.0, high=_RANGE)
        if self.max_gaming <= 0:
            raise ValueError(f"max_gaming={max_gaming!r} must be in (0, {_RANGE:g}] score points")
        self.loan_value = check_positive("loan_value", loan_value)
        self.fairness = check_choice("fairness", fairness, FAIRNESS)
        self.max_fine = check_number("max_fine", max_fine, low=0.0)
        self.audit_probability = check_number("audit_probability", audit_probability, low=0.0, high=1.0)
        self.welfare_weight = check_number("welfare_weight", welfare_weight, low=0.0)
        self.gap_weight = check_number("gap_weight", gap_weight, low=0.0)
        B = self.B = pop.num_bins
        self.obs_bins = check_choice("obs_bins", obs_bins, [d for d in range(1, B + 1) if B % d == 0])

        self.groups = pop.groups
        self.keys = [g.lower() for g in pop.groups]
        self.applicant_agents = [f"applicants_{k}" for k in self.keys]
        self.agents = ["bank", *self.applicant_agents, "regulator"]
        self.centers = pop.centers
        self.up, self.down = score_moves(B, float(pop.edges[1] - pop.edges[0]))
        self._cdf_flat = (np.cumsum(pop.pmf, 1) + np.arange(G)[:, None]).ravel()
        self._cdf_flat[B - 1 :: B] = np.arange(1, G + 1)
        self._cum_shares = np.cumsum(pop.shares)[:-1]

        public = [("round", 1, 0.0, 1.0), ("thresholds", G, 0.0, 1.0), ("gaming", G, 0.0, 1.0), ("regulation", 2, 0.0, 1.0), ("selection_rate", G, 0.0, 1.0)]
        parts = {"bank": [*public, ("observed_scores", G * self.obs_bins, 0.0, 1.0), ("default_rate", G, 0.0, 1.0)]}
        for a in self.applicant_agents:
            parts[a] = [*public, ("true_scores", self.obs_bins, 0.0, 1.0)]
        parts["regulator"] = [*public, ("mean_scores", G, 0.0, 1.0), ("tpr", G, 0.0, 1.0), ("gaps", 2, 0.0, 1.0), ("audited", 1, 0.0, 1.0)]
        actions = {"bank": spaces.Box(-1.0, 1.0, (G,), dtype=np.float32)}
        for a in self.applicant_agents:
            actions[a] = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        actions["regulator"] = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.set_role_spaces(parts, actions)

        k = self.num_envs
        self.scores = np.zeros((k, N), np.int64)
        self.member_group = np.zeros((k, N), np.int64)
        self.group_size = np.zeros((k, G))
        self.mean0 = np.zeros((k, G))
        self.round = np.zeros(k, np.int64)
        # last round's public outcome
        self.last_thresholds = np.zeros((k, G))
        self.last_gaming = np.zeros((k, G))
        self.last_regulation = np.zeros((k, 2))
        self.last_selection = np.zeros((k, G))
        self.last_tpr = np.zeros((k, G))
        self.last_gaps = np.zeros((k, 2))
        self.last_audited = np.zeros(k)
        self.last_default_rate = np.zeros((k, G))
        self.observed_hist = np.zeros((k, G, self.obs_bins))
        self.last_rewards = np.zeros((k, len(self.agents)))

    # ------------------------------------------------------------- seeding

    # --------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        N, B = self.population_size, self.B
        u = np.stack([self.rngs[i].random(2 * N) for i in idx])
        grp = np.searchsorted(self._cum_shares, u[:, :N], side="right")
        b = np.clip(np.searchsorted(self._cdf_flat, u[:, N:] + grp, side="right") - grp * B, 0, B - 1)
        self.scores[idx], self.member_group[idx] = b, grp
        self.group_size[idx] = self._group_counts(grp)
        self.mean0[idx] = self._mean_scores(idx)
        self.round[idx] = 0
        for arr in (self.last_thresholds, self.last_gaming, self.last_regulation, self.last_selection, self.last_tpr,
                    self.last_gaps, self.last_audited, self.last_default_rate, self.last_rewards):
            arr[idx] = 0.0
        self.observed_hist[idx] = self._histogram(self.centers[b], grp)
        info = {"round": self.round[idx].copy()}
        for j, key in enumerate(self.keys):
            info[f"mean_score_{key}"] = self.mean0[idx, j].copy()
        return self._observe(idx), {a: dict(info) for a in self.agents}

    # ---------------------------------------------------------------- step

    def step_indices(self, idx, actions):
        """Play one round in copies ``idx``; ``actions`` is a validated dict of per-agent batches."""
        idx = np.asarray(idx, dtype=np.int64)
        k, N = len(idx), self.population_size
        rows = np.arange(k)[:, None]
        tau = np.clip(_MID + _HALF * actions["bank"].astype(np.float64), SCORE_MIN, SCORE_MAX)  # (k, G)
        budget_frac = np.concatenate([actions[a].astype(np.float64) for a in self.applicant_agents], 1)  # (k, G)
        budget = self.max_gaming * budget_frac
        tolerance = actions["regulator"][:, 0].astype(np.float64)
        fine_frac = actions["regulator"][:, 1].astype(np.float64)
        u = np.stack([self.rngs[i].random(N + 1) for i in idx])

        b, g = self.scores[idx], self.member_group[idx]
        x = self.centers[b]
        t_i = tau[rows, g]
        qualifies = x >= t_i
        gamer = ~qualifies & (x + budget[rows, g] >= t_i)
        accepted = qualifies | gamer
        observed = np.where(gamer, t_i, x)
        paid = np.where(gamer, self.gaming_costs[g] * (t_i - x) / 100.0, 0.0)
        would_repay = u[:, :N] < self.population.repay[g, b]
        new_b = np.where(accepted, np.where(would_repay, self.up[b], self.down[b]), b)
        self.scores[idx] = new_b

        sizes = self.group_size[idx]
        def per_group(w):
            return self._group_counts(g, w)

        loans_g = per_group(accepted)
        pos_g = per_group(would_repay)
        tp_g = per_group(accepted & would_repay)
        defaults_g = loans_g - tp_g
        cost_g = per_group(paid)
        gamers_g = per_group(gamer)
        burden_g = per_group(np.where(accepted & would_repay, paid, 0.0))
        sel, tpr = safe_rate(loans_g, sizes), safe_rate(tp_g, pos_g)
        dp, eo = gap(sel, sizes > 0), gap(tpr, pos_g > 0)
        regulated = dp if self.fairness == "demographic_parity" else eo
        audited = u[:, N] < self.audit_probability
        fine_rate = self.max_fine * fine_frac
        fine = audited * fine_rate * np.maximum(regulated - tolerance, 0.0)
        repaid = tp_g.sum(1)
        profit = repaid - self.loss * defaults_g.sum(1)
        utility_g = self.loan_value * loans_g - cost_g
        welfare = (profit + utility_g.sum(1)) / N

        rewards = {"bank": profit / N - fine}
        for j, a in enumerate(self.applicant_agents):
            rewards[a] = safe_rate(utility_g[:, j], sizes[:, j])
        rewards["regulator"] = self.welfare_weight * welfare - self.gap_weight * regulated

        self.round[idx] += 1
        self.last_thresholds[idx] = tau
        self.last_gaming[idx] = budget_frac
        self.last_regulation[idx] = np.stack([tolerance, fine_frac], 1)
        self.last_selection[idx] = sel
        self.last_tpr[idx] = tpr
        self.last_gaps[idx] = np.stack([dp, eo], 1)
        self.last_audited[idx] = audited
        self.last_default_rate[idx] = safe_rate(defaults_g, loans_g)
        self.observed_hist[idx] = self._histogram(observed, g)
        self.last_rewards[idx] = np.stack([rewards[a] for a in self.agents], 1)

        means = self._mean_scores(idx)
        info: dict[str, np.ndarray] = {
            "round": self.round[idx] - 1, "profit": profit, "fine": fine, "audited": audited, "welfare": welfare,
            "dp_gap": dp, "eo_gap": eo, "gap": regulated, "tolerance": tolerance, "fine_rate": fine_rate,
        }
        for j, key in enumerate(self.keys):
            info[f"threshold_{key}"] = tau[:, j]
            info[f"gaming_budget_{key}"] = budget[:, j]
            info[f"selection_rate_{key}"] = sel[:, j]
            info[f"tpr_{key}"] = tpr[:, j]
            info[f"gamers_{key}"] = safe_rate(gamers_g[:, j], sizes[:, j])
            info[f"gaming_cost_{key}"] = safe_rate(cost_g[:, j], sizes[:, j])
            info[f"burden_{key}"] = safe_rate(burden_g[:, j], tp_g[:, j])
            info[f"mean_score_{key}"] = means[:, j]
            info[f"delayed_impact_{key}"] = means[:, j] - self.mean0[idx, j]
        terminated = self.round[idx] >= self.rounds
        return self._observe(idx), rewards, terminated, np.zeros(k, bool), {a: dict(info) for a in self.agents}

    # ------------------------------------------------------------- internals
    def _group_counts(self, g: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per copy and group, the count (or sum of ``weights``) over the people in ``g`` (shape ``(k, N)``)."""
        k = len(g)
        flat = (np.arange(k)[:, None] * self.G + g).ravel()
        w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
        return np.bincount(flat, weights=w, minlength=k * self.G).reshape(k, self.G).astype(np.float64)

    def _histogram(self, scores: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Per copy and group, the fraction of the group per band of ``scores`` (shape ``(k, G, obs_bins)``)."""
        k, nb = len(g), self.obs_bins
        band = np.clip(((scores - SCORE_MIN) / _RANGE * nb).astype(np.int64), 0, nb - 1)
        flat = ((np.arange(k)[:, None] * self.G + g) * nb + band).ravel()
        cnt = np.bincount(flat, minlength=k * self.G * nb).reshape(k, self.G, nb).astype(np.float64)
        return safe_rate(cnt, cnt.sum(2, keepdims=True))

    def _mean_scores(self, idx: np.ndarray) -> np.ndarray:
        sums = self._group_counts(self.member_group[idx], self.centers[self.scores[idx]])
        return safe_rate(sums, self.group_size[idx])

    def _observe(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        public = {
            "round": (self.round[idx] / self.rounds)[:, None],
            "thresholds": np.where(self.round[idx, None] > 0, (self.last_thresholds[idx] - SCORE_MIN) / _RANGE, 0.0),
            "gaming": self.last_gaming[idx],
            "regulation": self.last_regulation[idx],
            "selection_rate": self.last_selection[idx],
        }
        true_hist = self._histogram(self.centers[self.scores[idx]], self.member_group[idx])
        private: dict[str, dict[str, np.ndarray]] = {
            "bank": {"observed_scores": self.observed_hist[idx].reshape(k, -1), "default_rate": self.last_default_rate[idx]},
            "regulator": {
                "mean_scores": np.where(self.group_size[idx] > 0, (self._mean_scores(idx) - SCORE_MIN) / _RANGE, 0.0),
                "tpr": self.last_tpr[idx], "gaps": self.last_gaps[idx], "audited": self.last_audited[idx, None],
            },
        }
        for j, a in enumerate(self.applicant_agents):
            private[a] = {"true_scores": true_hist[:, j]}
        out = {}
        for a in self.agents:
            space, sl = self.observation_spaces[a], self.obs_slices[a]
            obs = np.empty((k, space.shape[0]), np.float32)
            for name, s in sl.items():
                obs[:, s] = public[name] if name in public else private[a][name]
            np.clip(obs, space.low, space.high, out=obs)
            out[a] = obs
        return out

    def thresholds_to_action(self, thresholds) -> np.ndarray:
        """The bank's action (float32, in [-1, 1]) for per-group ``thresholds`` given as scores in [300, 850]."""
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape[-1:] != (self.G,) or not np.isfinite(t).all() or (t < SCORE_MIN).any() or (t > SCORE_MAX).any():
            raise ValueError(f"thresholds={np.asarray(thresholds).tolist()!r} must be {self.G} finite scores in [{SCORE_MIN:g}, {SCORE_MAX:g}]")
        return np.clip((t - _MID) / _HALF, -1.0, 1.0).astype(np.float32)

    def rational_gaming(self) -> np.ndarray:
        """Per group, the gaming budget (fraction of ``max_gaming``) at which a member games exactly
        when the loan is worth the cost: ``100 * loan_value / gaming_costs[g]`` points, capped."""
        return np.minimum(100.0 * self.loan_value / self.gaming_costs / self.max_gaming, 1.0).astype(np.float32)

    # ------------------------------------------------------------ rendering
    def render_ansi(self, i: int) -> str:
        head = f"round {self.round[i]}/{self.rounds}"
        if self.round[i] == 0:
            return f"{head}  no round played yet; mean scores " + ", ".join(f"{g} {m:.1f}" for g, m in zip(self.groups, self.mean0[i]))
        parts = [
            f"{g}: threshold {t:.0f}, gaming {gm * self.max_gaming:.0f} pts, lent {s:.2f}"
            for g, t, gm, s in zip(self.groups, self.last_thresholds[i], self.last_gaming[i], self.last_selection[i])
        ]
        rew = ", ".join(f"{a} {r:+.3f}" for a, r in zip(self.agents, self.last_rewards[i]))
        return f"{head}  {'; '.join(parts)}  dp gap {self.last_gaps[i, 0]:.3f} eo gap {self.last_gaps[i, 1]:.3f}  rewards {rew}"

    def render_rgb(self, i: int) -> np.ndarray:
        """Per group: the true score distribution, the distribution the bank observed (after gaming) and the bank's threshold."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(600, 270), grid=(1, self.G), margins={"left": 0.06, "wspace": 0.2, "bottom": 0.17, "top": 0.8})
        rew = ", ".join(f"{a.removeprefix('applicants_')} {r:+.2f}" for a, r in zip(self.agents, self.last_rewards[i]))
        played = self.round[i] > 0
        axes = sk.begin(f"LendingMarket: round {self.round[i]}/{self.rounds}"
                        + (f", dp gap {self.last_gaps[i, 0]:.2f}, eo gap {self.last_gaps[i, 1]:.2f}\nrewards {rew}" if played else ": no round played yet"),
                        fontsize=8)
        nb = self.obs_bins
        edges = np.linspace(SCORE_MIN, SCORE_MAX, nb + 1)
        true = self._histogram(self.centers[self.scores[i]][None], self.member_group[i][None])[0]
        colours = (PALETTE["blue"], PALETTE["red"], PALETTE["green"], PALETTE["purple"])
        top = max(float(true.max()), float(self.observed_hist[i].max()), 1e-12) * 1.25
        for j, ax in enumerate(axes):
            ax.stairs(true[j], edges, color=colours[j % 4], fill=True, alpha=0.5, label="true scores")
            if played:
                ax.stairs(self.observed_hist[i, j], edges, color=PALETTE["black"], lw=1, label="seen by the bank")
                ax.axvline(self.last_thresholds[i, j], color=PALETTE["green"], lw=2, label=f"threshold {self.last_thresholds[i, j]:.0f}")
                ax.set_title(f"{self.groups[j]}: gaming {self.last_gaming[i, j] * self.max_gaming:.0f} pts, lent {self.last_selection[i, j]:.2f}", fontsize=8)
            else:
                ax.set_title(self.groups[j], fontsize=8)
            ax.set_xlim(SCORE_MIN, SCORE_MAX)
            ax.set_ylim(0, top)
            ax.set_xlabel("credit score", fontsize=7)
            ax.legend(fontsize=6, loc="upper left")
            ax.tick_params(labelsize=7)
        return sk.finish()

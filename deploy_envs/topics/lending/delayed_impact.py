"""``deploy_envs/DelayedImpactLending-v0``: ml-fairness-gym's 7-cluster DelayedImpact lending setting.

A separate module (not an option of ``FairLending-v0``) because the two models differ in
kind: FairLending holds a population of individuals with FICO scores that move +75/-150,
while the DelayedImpact preset of D'Amour et al. 2020 ("Fairness is Not Static", FAT* 2020;
google/ml-fairness-gym ``environments/lending.py`` and ``lending_params.py``) holds, per
group, a *distribution* over 7 credit clusters from which every applicant is drawn afresh,
and an accepted applicant's repayment or default moves a fixed amount of that group's
probability mass one cluster up or down.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import BatchedCore
from deploy_envs.core.spaces import flat_box
from deploy_envs.core.validation import check_choice, check_number, check_positive
from deploy_envs.metrics.fairness import gap_info, group_rates, safe_rate

CLUSTER_PROBS = np.array([
    [0.0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.0],
    [0.1, 0.1, 0.2, 0.3, 0.3, 0.0, 0.0],
])
"""Initial probability of each credit cluster per group (ml-fairness-gym ``DELAYED_IMPACT_CLUSTER_PROBS``)."""
SUCCESS_PROBS = np.array([0.1, 0.2, 0.45, 0.6, 0.65, 0.7, 0.7])
"""Probability of repayment per cluster, lowest to highest (ml-fairness-gym ``DELAYED_IMPACT_SUCCESS_PROBS``)."""
NUM_CLUSTERS = len(SUCCESS_PROBS)
GROUP_KEYS = ("group_1", "group_2")
CONSTRAINTS = (None, "demographic_parity", "equal_opportunity")


def cluster_acceptance(thresholds: np.ndarray) -> np.ndarray:
    """Acceptance probability per cluster for thresholds ``tau`` in [0, 7] (shape ``(..., G)`` -> ``(..., G, 7)``).

    Cluster ``c`` is accepted with probability ``clip(c + 1 - tau, 0, 1)``: ``tau = 0`` lends
    to all, ``tau = 7`` to none, an integer ``tau = k`` to clusters ``k..6``, and a fractional
    ``tau`` randomizes in the cluster it falls in (Hardt et al. 2016's randomization).
    """
    return np.clip(np.arange(1, NUM_CLUSTERS + 1) - np.asarray(thresholds, dtype=np.float64)[..., None], 0.0, 1.0)


class DelayedImpactCore(BatchedCore):
    """## Description

    ml-fairness-gym's DelayedImpact lending environment (D'Amour et al. 2020, "Fairness is
    Not Static: Deeper Understanding of Long Term Fairness via Simulation Studies", FAT*
    2020; based on Liu et al. 2018), natively batched. Two groups; each has a probability
    distribution over 7 credit clusters, initially group 1 ``(0, .1, .1, .2, .3, .3, 0)`` and
    group 2 ``(.1, .1, .2, .3, .3, 0, 0)`` (group 2 is disadvantaged). An applicant's group is
    drawn with probabilities ``(group_1_prob, 1 - group_1_prob)``, their cluster from the
    group's current distribution, and they would repay with the cluster's probability
    ``(.1, .2, .45, .6, .65, .7, .7)``. A repaid loan earns ``interest_rate``, a default
    loses 1 (the loan amount). When a loan is made, ``min(cluster_shift, p[c])`` of the
    group's probability mass moves from the applicant's cluster ``c`` to ``c + 1`` on
    repayment or ``c - 1`` on default (clipped to the end clusters); a rejected applicant
    changes nothing. This is the update rule of ml-fairness-gym's ``_CreditShift`` state
    updater (``environments/lending.py``) with its default increment 0.01
    (``DelayedImpactParams.cluster_shift_increment``). Each step of this env processes
    ``applicants_per_step`` applicants one after another under the bank's thresholds (each
    drawn from the distribution as shifted by the ones before); with 1 it is exactly the
    library's one-applicant step.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: one cluster threshold per group, ``tau = 3.5 * (a + 1)``
    in [0, 7]; cluster ``c`` (0..6) is accepted with probability ``clip(c + 1 - tau, 0, 1)``
    (-1 lends to all, 1 to none; :meth:`DelayedImpactCore.thresholds_to_action` converts).

    ## Observation Space

    A flat ``Box`` of float32 (see ``obs_slices``):

    | part | size | range | content |
    |---|---|---|---|
    | ``clusters`` | 14 | [0, 1] | group 1's then group 2's current cluster probabilities |
    | ``totals`` | 3 | [0, 1], [-1, r], [-1, r] | fraction of the horizon elapsed; last step's and cumulative profit per applicant (``r = interest_rate``) |

    ## Rewards

    The step's profit per applicant: ``(interest_rate * repaid - defaulted) / applicants_per_step``.

    ## Starting State

    The initial cluster distributions above; bank cash ``bank_starting_cash``.

    ## Episode End

    Terminates after ``horizon`` steps, or when the bank's cash falls below the loan amount 1
    (the library's end condition), checked at the end of a step.

    ## Info

    ``profit``, ``loans``, ``repaid``, ``defaults``, ``bank_cash``; per group ``g`` in
    ``group_1``, ``group_2``: ``selection_rate_g``, ``tpr_g`` (this step),
    ``cum_selection_rate_g``, ``cum_tpr_g``, ``cum_loans_g``, ``mean_cluster_g`` (expected
    cluster index 0..6 of the current distribution), ``repay_prob_g`` (the group's
    current mean repayment probability), ``delayed_impact_g`` (``mean_cluster_g`` now
    minus at reset); ``dp_gap``, ``eo_gap``, ``cum_dp_gap``, ``cum_eo_gap``; ``cost`` when
    ``constraint`` is set. TPRs use the potential outcomes the bank never sees (the
    auditor's channel). The reset info carries ``mean_cluster_g``.

    ## Arguments

    * ``interest_rate``: gain per repaid loan, > 0 (default 1.0, as in the library's
      published lending experiments; the library's parameter default 0.3 makes a
      max-reward bank lend to no cluster, since no repayment probability exceeds 1/1.3).
    * ``cluster_shift``: probability mass moved per loan outcome, in (0, 1] (default 0.01).
    * ``group_1_prob``: probability an applicant is from group 1, in [0, 1] (default 0.5).
    * ``bank_starting_cash``: >= 1 (default 100, the library's experiments).
    * ``applicants_per_step`` (default 10), ``horizon`` (default 500; 5000 applicants as in
      the library's quickstart).
    * ``constraint``: ``None``, ``"demographic_parity"`` or ``"equal_opportunity"`` (the
      step's gap above ``constraint_tolerance`` is reported as ``cost``).

    ## Version History

    * v0: initial release.
    """

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        interest_rate: float = 1.0,
        cluster_shift: float = 0.01,
        group_1_prob: float = 0.5,
        bank_starting_cash: float = 100.0,
        applicants_per_step: int = 10,
        horizon: int = 500,
        constraint: str | None = None,
        constraint_tolerance: float = 0.0,
    ) -> None:
        super().__init__(num_envs, render_mode)
        self.interest_rate = r = check_number("interest_rate", interest_rate, low=0.0, low_inclusive=False, high=1e6)
        self.cluster_shift = check_number("cluster_shift", cluster_shift, low=0.0, low_inclusive=False, high=1.0)
        self.group_1_prob = check_number("group_1_prob", group_1_prob, low=0.0, high=1.0)
        self.bank_starting_cash = check_number("bank_starting_cash", bank_starting_cash, low=1.0)
        self.applicants_per_step = check_positive("applicants_per_step", applicants_per_step, integer=True)
        self.horizon = check_positive("horizon", horizon, integer=True)
        self.constraint = check_choice("constraint", constraint, CONSTRAINTS)
        self.constraint_tolerance = check_number("constraint_tolerance", constraint_tolerance, low=0.0, high=1.0)
        self.groups = ("group 1", "group 2")
        self.keys = GROUP_KEYS
        self.G, self.C = 2, NUM_CLUSTERS
        self.success = SUCCESS_PROBS.copy()
        self.single_observation_space, self.obs_slices = flat_box([
            ("clusters", self.G * self.C, 0.0, 1.0),
            ("totals", 3, np.array([0.0, -1.0, -1.0]), np.array([1.0, r, r])),
        ])
        self.obs_dim = self.single_observation_space.shape[0]
        self._obs_low, self._obs_high = self.single_observation_space.low, self.single_observation_space.high
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.G,), dtype=np.float32)
        k = self.num_envs
        self.probs = np.zeros((k, self.G, self.C))
        self.cash = np.zeros(k)
        self.t = np.zeros(k, np.int64)
        self.last_threshold = np.full((k, self.G), np.nan)  # the thresholds of the last step (for the picture)
        self.mean0 = np.zeros((k, self.G))
        self.cum = {name: np.zeros((k, self.G)) for name in ("applicants", "accepted", "positives", "true_positives")}
        self.totals = {name: np.zeros(k) for name in ("profit", "last_profit")}

    # ----------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        self.probs[idx] = CLUSTER_PROBS
        self.cash[idx] = self.bank_starting_cash
        self.t[idx] = 0
        self.last_threshold[idx] = np.nan
        for arr in (*self.cum.values(), *self.totals.values()):
            arr[idx] = 0.0
        self.mean0[idx] = self._mean_cluster(idx)
        info = {f"mean_cluster_{g}": self.mean0[idx, j].copy() for j, g in enumerate(self.keys)}
        return self._observe(idx), info

    # ------------------------------------------------------------------ step
    def step_indices(self, idx, actions):
        n, G, C = self.applicants_per_step, self.G, self.C
        k = len(idx)
        ar = np.arange(k)
        thresholds = 3.5 * (actions.astype(np.float64) + 1.0)
        self.last_threshold[idx] = thresholds
        acc_table = cluster_acceptance(thresholds)  # (k, G, C)
        u = np.stack([self.rngs[i].random((n, 4)) for i in idx], 1)  # (n, k, 4)
        probs = self.probs[idx]
        step = {name: np.zeros((k, G)) for name in self.cum}
        top = np.arange(k)
        for j in range(n):  # applicants in sequence: each is drawn after the previous one's shift
            g = (u[j, :, 0] >= self.group_1_prob).astype(np.int64)
            cdf = np.cumsum(probs[ar, g], 1)
            c = np.minimum((u[j, :, 1, None] >= cdf).sum(1), C - 1)
            c = np.where(probs[ar, g, c] > 0, c, C - 1 - np.argmax(probs[ar, g, ::-1] > 0, 1))  # u above a cdf that sums to 1 - eps: last cluster with mass
            repay = u[j, :, 2] < self.success[c]
            accept = u[j, :, 3] < acc_table[ar, g, c]
            new_c = np.clip(np.where(repay, c + 1, c - 1), 0, C - 1)
            mass = np.where(accept, np.minimum(self.cluster_shift, probs[ar, g, c]), 0.0)
            probs[ar, g, c] -= mass
            probs[ar, g, new_c] += mass
            np.add.at(step["applicants"], (top, g), 1.0)
            np.add.at(step["accepted"], (top, g), accept)
            np.add.at(step["positives"], (top, g), repay)
            np.add.at(step["true_positives"], (top, g), accept & repay)
        np.clip(probs, 0.0, 1.0, out=probs)
        self.probs[idx] = probs
        for key, v in step.items():
            self.cum[key][idx] += v
        repaid = step["true_positives"].sum(1)
        loans = step["accepted"].sum(1)
        defaults = loans - repaid
        profit = self.interest_rate * repaid - defaults
        self.cash[idx] += profit
        self.totals["profit"][idx] += profit
        self.totals["last_profit"][idx] = profit
        self.t[idx] += 1

        c_ = {key: self.cum[key][idx] for key in self.cum}
        sel, tpr = group_rates(**step)
        csel, ctpr = group_rates(**c_)
        mean = self._mean_cluster(idx)
        repay_prob = probs @ self.success
        info: dict[str, np.ndarray] = {
            "profit": profit, "loans": loans, "repaid": repaid, "defaults": defaults, "bank_cash": self.cash[idx].copy(),
        }
        for j, name in enumerate(self.keys):
            info[f"selection_rate_{name}"] = sel[:, j]
            info[f"tpr_{name}"] = tpr[:, j]
            info[f"cum_selection_rate_{name}"] = csel[:, j]
            info[f"cum_tpr_{name}"] = ctpr[:, j]
            info[f"cum_loans_{name}"] = c_["accepted"][:, j].copy()
            info[f"mean_cluster_{name}"] = mean[:, j]
            info[f"repay_prob_{name}"] = repay_prob[:, j]
            info[f"delayed_impact_{name}"] = mean[:, j] - self.mean0[idx, j]
        info.update(gap_info(step, c_, self.constraint, self.constraint_tolerance))
        terminated = (self.t[idx] >= self.horizon) | (self.cash[idx] < 1.0)
        return self._observe(idx), profit / n, terminated, np.zeros(k, bool), info

    # ------------------------------------------------------------- internals
    def _mean_cluster(self, idx) -> np.ndarray:
        return self.probs[idx] @ np.arange(self.C, dtype=np.float64)

    def _observe(self, idx) -> np.ndarray:
        k = len(idx)
        obs = np.empty((k, self.obs_dim), np.float32)
        s = self.obs_slices
        obs[:, s["clusters"]] = self.probs[idx].reshape(k, -1)
        seen = self.t[idx] * self.applicants_per_step
        obs[:, s["totals"]] = np.stack([
            self.t[idx] / self.horizon,
            self.totals["last_profit"][idx] / self.applicants_per_step,
            safe_rate(self.totals["profit"][idx], seen),
        ], 1)
        np.clip(obs, self._obs_low, self._obs_high, out=obs)
        return obs

    def thresholds_to_action(self, thresholds) -> np.ndarray:
        """The action (float32, in [-1, 1]) for per-group cluster thresholds in [0, 7]."""
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape[-1:] != (self.G,) or not np.isfinite(t).all() or (t < 0).any() or (t > self.C).any():
            raise ValueError(f"thresholds={np.asarray(thresholds).tolist()!r} must be {self.G} finite cluster thresholds in [0, {self.C}]")
        return np.clip(t / 3.5 - 1.0, -1.0, 1.0).astype(np.float32)

    def render_ansi(self, i: int) -> str:
        rows = "; ".join(f"{g}: " + " ".join(f"{p:.2f}" for p in self.probs[i, j]) for j, g in enumerate(self.groups))
        return f"step {self.t[i]}/{self.horizon}: cash {self.cash[i]:.1f}; clusters {rows}"

    def render_rgb(self, i: int) -> np.ndarray:
        """Each group's distribution over the 7 credit clusters (now, and at the start as an outline) with the bank's threshold."""
        from deploy_envs.core.rendering import PALETTE, sketch

        sk = sketch(self, size=(560, 260), grid=(1, self.G), margins={"left": 0.08, "wspace": 0.2, "bottom": 0.17})
        axes = sk.begin(f"DelayedImpactLending: step {self.t[i]}/{self.horizon}, bank cash {self.cash[i]:.1f}, "
                        f"profit {self.totals['profit'][i]:+.1f}", fontsize=9)
        x = np.arange(self.C)
        colours = (PALETTE["blue"], PALETTE["red"])
        mean = self._mean_cluster(np.array([i]))[0]
        for j, ax in enumerate(axes):
            ax.bar(x, self.probs[i, j], color=colours[j % 2], alpha=0.75, label="now")
            ax.stairs(CLUSTER_PROBS[j], np.arange(self.C + 1) - 0.5, color=PALETTE["black"], lw=1, label="start")
            tau = self.last_threshold[i, j]
            if np.isfinite(tau):  # cluster c is lent to with probability clip(c + 1 - tau, 0, 1): the cut is at tau - 0.5
                ax.axvline(tau - 0.5, color=PALETTE["green"], lw=2, label=f"threshold {tau:.2f}")
            ax.set_xticks(x, [f"{c}\n{p:.2f}" for c, p in zip(x, self.success)], fontsize=6)
            ax.set_ylim(0, 0.6)
            ax.set_xlim(-0.6, self.C - 0.4)
            ax.set_title(f"{self.groups[j]}: mean cluster {mean[j]:.2f} ({mean[j] - self.mean0[i, j]:+.2f})", fontsize=8)
            ax.set_xlabel("cluster / repay probability", fontsize=7)
            ax.legend(fontsize=6, loc="upper left")
            ax.tick_params(labelsize=7)
        return sk.finish()

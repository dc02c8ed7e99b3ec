"""``deploy_envs/ExtractionGuard-v0``: a model thief against the guard of a prediction API.

Build it with ``deploy_envs.make_game("deploy_envs/ExtractionGuard-v0")``.
The game is written once as :class:`ExtractionGuardCore`, a batched core (one victim
forward pass and one batched surrogate update for all copies); the PettingZoo
Its PettingZoo view, ``make_game("deploy_envs/ExtractionGuard-v0")``, is that core at batch size 1.

The extractor's observation has exactly the layout of ``ModelExtraction-v0``, so the
extraction baselines (:mod:`deploy_envs.topics.extraction.baselines`) play the extractor
seat through :func:`extractor_seat`.
"""
from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from deploy_envs.api.model_api import ModelAPI, PradaDetector
from deploy_envs.core.games import GameCore
from deploy_envs.core.validation import check_names, check_number, check_positive
from deploy_envs.topics.extraction.model_extraction import SURROGATE_ARGUMENTS, SurrogateThief

AGENTS = ("extractor", "guard")
#: output granularities the guard may be offered (Tramer et al. 2016 study these)
GRANULARITIES = ("probabilities", "rounded", "top_k", "label")


def _check_levels(name: str, values: Any, low: float, high: float | None = None) -> tuple[float, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name}={values!r} must be a non-empty sequence of numbers")
    out = tuple(float(check_number(name, v, low=low, high=high)) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}={values!r} repeats a value; each may appear once")
    return out


class ExtractionGuardCore(SurrogateThief, GameCore):
    """## Description

    A repeated simultaneous-move game around a prediction API in front of a victim
    classifier (the digits CNN, ``"standard"``, by default). The **extractor** is a
    model thief (Tramer et al. 2016; Papernot et al. 2017; Orekondy et al. 2019): each
    round it submits ``batch_size`` queries and the env trains its surrogate on all the
    answers so far, as in ``ModelExtraction-v0``. The **guard** runs the API: each round,
    at the same time and without seeing this round's queries, it sets

    * the output granularity (``"probabilities"``, probabilities ``"rounded"`` to
      ``decimals`` decimals, ``"top_k"`` probabilities, or the ``"label"`` only),
    * the standard deviation of Gaussian noise added to the probabilities (clipped
      and renormalised, before the granularity is applied), from ``noise_levels``,
    * the detection threshold ``delta`` of a PRADA detector (Juuti et al. 2019, "PRADA:
      Protecting against DNN Model Stealing Attacks", EuroS&P): a client whose stream
      of nearest-neighbour query distances has a Shapiro-Wilk statistic ``W < delta``
      is flagged, for good, and refused from then on; ``delta = 0`` switches detection off.

    The same API also serves a stream of ``benign_queries`` natural inputs per round
    (drawn from the dataset's train split, from the copy's generator) of one benign
    client, which the same settings and a detector of its own apply to. The guard is
    scored on the extractor's fidelity gain and on the utility the benign client keeps.

    Each round, in order: the victim answers all queries (one forward pass); both
    clients' detectors see their queries and take the guard's threshold; a client that
    is flagged now has this round's answers refused; noise and granularity are applied
    (each copy's noise from its own generator); the extractor's surrogate is trained on
    every answer so far (``fit_steps`` Adam steps on the soft-label cross-entropy) and
    its fidelity is measured on the held-out test split, which no client ever sees.

    ## Agents

    ``"extractor"`` and ``"guard"``; both act every round.

    ## Action Spaces

    * extractor: ``Box(0, 1, (batch_size * d,), float32)``: ``batch_size`` queries of
      ``d`` pixels, row after row (as in ``ModelExtraction-v0``).
    * guard: ``MultiDiscrete([len(granularities), len(noise_levels), len(thresholds)])``:
      indices into ``granularities``, ``noise_levels`` and ``thresholds``.

    ## Observation Spaces

    Flat ``Box`` es of float32 in [0, 1] (``core.obs_slices[agent]`` names the parts).

    extractor (the layout of ``ModelExtraction-v0``):

    | part | size | content |
    |---|---|---|
    | ``answer`` | batch_size * K | the answers to its last batch (zeros where refused) |
    | ``answered`` | batch_size | 1 where the API answered the query |
    | ``uncertainty`` | batch_size | the surrogate's predictive entropy / log K on each query, before it learned the answer |
    | ``budget`` | 1 | fraction of the rounds left |

    guard:

    | part | size | content |
    |---|---|---|
    | ``previous_granularity`` | G | one-hot of last round's granularity (zeros in round 0) |
    | ``previous_noise`` | N | one-hot of last round's noise level (zeros in round 0) |
    | ``previous_threshold`` | T | one-hot of last round's threshold (zeros in round 0) |
    | ``extractor_w`` | 1 | the extractor's latest Shapiro-Wilk statistic (1 before the first test) |
    | ``benign_w`` | 1 | the benign client's latest statistic (1 before the first test) |
    | ``extractor_flagged`` | 1 | 1 once the extractor is flagged |
    | ``benign_flagged`` | 1 | 1 once the benign client is flagged (a false positive) |
    | ``benign_utility`` | 1 | last round's benign utility |
    | ``round`` | 1 | rounds played / ``rounds`` |

    The guard sees what an API operator sees (its settings and detector statistics),
    never the extractor's surrogate.

    ## Rewards

    extractor: ``reward_scale * (fidelity_after - fidelity_before)``, the fidelity gain
    of its surrogate this round. guard: ``utility_weight * benign_utility`` minus the
    extractor's reward. ``benign_utility`` is the mean over the round's benign queries
    of ``answered * (1 - TV(served, victim))``: one minus the total-variation distance
    between the served answer (normalised to sum 1) and the victim's true probabilities,
    0 where refused. Label-only answers keep the top class and cost ``1 - p_max``; noise
    and refusals cost more.

    ## Starting State

    A fresh surrogate (random initialisation from the copy's generator), fresh clients
    and detectors, no previous settings, zero answers, full budget.

    ## Episode End

    After ``rounds`` rounds both agents are **terminated** (the budget is part of both
    observations). The PettingZoo env then has no live agents.

    ## Info

    Per agent, the same keys: ``fidelity`` and ``test_accuracy`` of the surrogate,
    ``benign_utility``, ``extractor_answered`` and ``benign_answered`` (this round),
    ``extractor_flagged``, ``benign_flagged``, ``granularity`` (index), ``noise``,
    ``threshold``, ``extractor_w``, ``benign_w``, ``queries`` (extractor's, so far) and
    ``round`` (the index of the round just played). Reset infos carry ``fidelity``,
    ``test_accuracy``, ``queries`` and ``round``.

    ## Arguments

    * ``victim``: zoo name (default ``"standard"``) or ``nn.Module``; ``dataset``: ``"digits"``.
    * ``surrogate``: ``"mlp"`` (default) or ``"logistic"``; ``hidden`` (64), ``fit_steps`` (10), ``lr`` (0.01).
    * ``batch_size``: extractor queries per round (10); ``rounds``: rounds per episode (20).
    * ``benign_queries``: benign queries per round (10).
    * ``granularities``: names from :data:`GRANULARITIES` (no repeats; default all four);
      ``decimals`` (1) for ``"rounded"``, ``top_k`` (3) for ``"top_k"``.
    * ``noise_levels``: noise standard deviations >= 0 (default ``(0.0, 0.1, 0.2)``).
    * ``thresholds``: PRADA thresholds in [0, 1] (default ``(0.0, 0.9, 0.95)``; 0 = off).
    * ``prada_min_distances`` (100) and ``prada_check_every`` (10): as in the PRADA reference code.
    * ``utility_weight`` (>= 0, default 1), ``reward_scale`` (default 1), ``holdout``
      (held-out test inputs for fidelity, None = all), ``device``.

    ## Version History

    * v0: initial release.
    """

    arguments = SURROGATE_ARGUMENTS

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        *,
        victim: Any = "standard",
        dataset: str = "digits",
        surrogate: str = "mlp",
        hidden: int = 64,
        fit_steps: int = 10,
        lr: float = 0.01,
        batch_size: int = 10,
        rounds: int = 20,
        benign_queries: int = 10,
        granularities: Sequence[str] = GRANULARITIES,
        decimals: int = 1,
        top_k: int = 3,
        noise_levels: Sequence[float] = (0.0, 0.1, 0.2),
        thresholds: Sequence[float] = (0.0, 0.9, 0.95),
        prada_min_distances: int = 100,
        prada_check_every: int = 10,
        utility_weight: float = 1.0,
        reward_scale: float = 1.0,
        holdout: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(num_envs, render_mode)
        self._check_surrogate(surrogate, hidden, fit_steps, lr, batch_size)
        self.rounds = check_positive("rounds", rounds, integer=True)
        self.max_queries = self.batch_size * self.rounds
        self.benign_queries = check_positive("benign_queries", benign_queries, integer=True)
        self.granularities = check_names("granularities", granularities, GRANULARITIES)
        self.decimals = check_number("decimals", decimals, low=0, high=8, integer=True)
        self.noise_levels = _check_levels("noise_levels", noise_levels, 0.0)
        self.thresholds = _check_levels("thresholds", thresholds, 0.0, 1.0)
        self.prada_min_distances = check_positive("prada_min_distances", prada_min_distances, integer=True)
        self.prada_check_every = check_positive("prada_check_every", prada_check_every, integer=True)
        self.utility_weight = check_number("utility_weight", utility_weight, low=0.0)
        self.reward_scale = check_number("reward_scale", reward_scale)

        # the API holds the victim; the guard's per-round settings are applied here, per copy
        self.api = ModelAPI(victim, dataset=dataset, device=device)
        self.top_k = check_number("top_k", top_k, low=1, high=self.api.num_classes, integer=True)
        ds = self._init_held_out(self.api, dataset, holdout)
        d, K = self.d, self.K
        self.benign_pool = np.ascontiguousarray(ds.x_train.reshape(len(ds.y_train), d), dtype=np.float32)

        m = self.batch_size
        G, N, T = self.G, self.N, self.T = len(self.granularities), len(self.noise_levels), len(self.thresholds)
        ext_parts = [("answer", m * K, 0.0, 1.0), ("answered", m, 0.0, 1.0), ("uncertainty", m, 0.0, 1.0), ("budget", 1, 0.0, 1.0)]
        guard_parts = [
            ("previous_granularity", G, 0.0, 1.0), ("previous_noise", N, 0.0, 1.0), ("previous_threshold", T, 0.0, 1.0),
            ("extractor_w", 1, 0.0, 1.0), ("benign_w", 1, 0.0, 1.0), ("extractor_flagged", 1, 0.0, 1.0),
            ("benign_flagged", 1, 0.0, 1.0), ("benign_utility", 1, 0.0, 1.0), ("round", 1, 0.0, 1.0),
        ]
        self.set_role_spaces(
            {"extractor": ext_parts, "guard": guard_parts},
            {"extractor": spaces.Box(0.0, 1.0, (m * d,), dtype=np.float32), "guard": spaces.MultiDiscrete([G, N, T])},
        )
        self._noise_arr = np.asarray(self.noise_levels)
        self._thr_arr = np.asarray(self.thresholds)

        # ---- per-copy state
        self._init_thief()
        n = self.num_envs
        self.round = np.zeros(n, np.int64)
        self.prev_action = np.full((n, 3), -1, np.int64)
        self.ext_flagged = np.zeros(n, bool)
        self.ben_flagged = np.zeros(n, bool)
        self.ext_w = np.ones(n, np.float64)
        self.ben_w = np.ones(n, np.float64)
        self.last_utility = np.zeros(n, np.float64)
        self.last_answer = np.zeros((n, m * K), np.float32)
        self.last_answered = np.zeros((n, m), np.float32)
        self.last_uncertainty = np.zeros((n, m), np.float32)
        self.last_rewards = np.zeros((n, 2), np.float64)
        self.detectors: list[list[PradaDetector]] = [[self._detector(), self._detector()] for _ in range(n)]

    def _detector(self) -> PradaDetector:
        # delta -1: the detector only measures W; the guard's threshold of the round decides the flag
        return PradaDetector(-1.0, self.prada_min_distances, self.prada_check_every)

    # ------------------------------------------------------------- seeding

    # --------------------------------------------------------------- reset
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        self.round[idx] = 0
        self.prev_action[idx] = -1
        self.ext_flagged[idx] = False
        self.ben_flagged[idx] = False
        self.ext_w[idx] = 1.0
        self.ben_w[idx] = 1.0
        self.last_utility[idx] = 0.0
        self.last_answer[idx] = 0.0
        self.last_answered[idx] = 0.0
        self.last_uncertainty[idx] = 0.0
        self.last_rewards[idx] = 0.0
        for i in idx:
            self.detectors[i] = [self._detector(), self._detector()]
        self._reset_thief(idx)
        info = {"fidelity": self.fidelity[idx].copy(), "test_accuracy": self.test_accuracy[idx].copy(),
                "queries": self.queries[idx].copy(), "round": self.round[idx].copy()}
        return self._observe(idx), {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}

    # ---------------------------------------------------------------- step

    def step_indices(self, idx, actions):
        """Play one round in copies ``idx`` with a validated dict of per-agent batches; returns per-agent dicts."""
        idx = np.asarray(idx, dtype=np.int64)
        b, m, nb, d, K = len(idx), self.batch_size, self.benign_queries, self.d, self.K
        q = np.asarray(actions["extractor"], np.float32).reshape(b, m, d)
        g = np.asarray(actions["guard"], np.int64).reshape(b, 3)
        gran, noise, thr = g[:, 0], self._noise_arr[g[:, 1]], self._thr_arr[g[:, 2]]
        benign = np.stack([self.benign_pool[self.rngs[i].integers(len(self.benign_pool), size=nb)] for i in idx])
        xq = torch.from_numpy(np.ascontiguousarray(q))
        uncertainty = self.surrogate.entropy(idx, xq).numpy()

        # one forward pass for both clients of all copies
        allq = np.concatenate([q, benign], 1)
        probs = self.api.victim_probabilities(allq.reshape(-1, d)).reshape(b, m + nb, K)
        classes = probs.argmax(2)
        # detectors see the queries, then the guard's threshold of this round decides
        for j, i in enumerate(idx):
            det_e, det_b = self.detectors[i]
            det_e.observe(q[j].astype(np.float64), classes[j, :m])
            det_b.observe(benign[j].astype(np.float64), classes[j, m:])
            self.ext_w[i] = 1.0 if det_e.last_w is None else det_e.last_w
            self.ben_w[i] = 1.0 if det_b.last_w is None else det_b.last_w
        self.ext_flagged[idx] |= self.ext_w[idx] < thr
        self.ben_flagged[idx] |= self.ben_w[idx] < thr
        ok = np.empty((b, m + nb), bool)
        ok[:, :m] = ~self.ext_flagged[idx, None]
        ok[:, m:] = ~self.ben_flagged[idx, None]

        served = self._serve(idx, probs, gran, noise)
        served[~ok] = 0.0
        total = served.sum(2, keepdims=True)
        normed = served / np.maximum(total, 1e-12)
        tv = 0.5 * np.abs(normed[:, m:] - probs[:, m:]).sum(2)
        utility = (ok[:, m:] * (1.0 - tv)).mean(1)

        # the extractor's surrogate learns from every answer so far
        gain = self._learn(idx, xq, torch.from_numpy(normed[:, :m].astype(np.float32)),
                           torch.from_numpy((ok[:, :m] & (total[:, :m, 0] > 0)).astype(np.float32)))
        r_ext = self.reward_scale * gain
        r_guard = self.utility_weight * utility - r_ext

        ext_answered = ok[:, :m].sum(1)
        info = {
            "fidelity": self.fidelity[idx].copy(),
            "test_accuracy": self.test_accuracy[idx].copy(),
            "benign_utility": utility.astype(np.float64),
            "extractor_answered": ext_answered.astype(np.int64),
            "benign_answered": ok[:, m:].sum(1).astype(np.int64),
            "extractor_flagged": self.ext_flagged[idx].copy(),
            "benign_flagged": self.ben_flagged[idx].copy(),
            "granularity": gran.copy(),
            "noise": noise.astype(np.float64),
            "threshold": thr.astype(np.float64),
            "extractor_w": self.ext_w[idx].copy(),
            "benign_w": self.ben_w[idx].copy(),
            "queries": self.queries[idx].copy(),
            "round": self.round[idx].copy(),
        }
        self.prev_action[idx] = g
        self.last_utility[idx] = utility
        self.last_answer[idx] = served[:, :m].reshape(b, m * K).astype(np.float32)
        self.last_answered[idx] = ok[:, :m]
        self.last_uncertainty[idx] = uncertainty
        self.last_rewards[idx] = np.stack([r_ext, r_guard], 1)
        self.round[idx] += 1
        terminated = self.round[idx] >= self.rounds
        rewards = {"extractor": r_ext.astype(np.float64), "guard": r_guard.astype(np.float64)}
        infos = {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}
        return self._observe(idx), rewards, terminated, np.zeros(b, bool), infos

    # ------------------------------------------------------------ internals
    def _serve(self, idx: np.ndarray, probs: np.ndarray, gran: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Noise (each copy's from its own generator), then the granularity of each copy: ``(b, n, K)`` float64."""
        b, n, K = probs.shape
        out = probs.copy()
        noisy = np.flatnonzero(noise > 0)
        if len(noisy):
            eps = np.stack([self.rngs[idx[j]].standard_normal((n, K)) for j in noisy])
            out[noisy] = np.clip(out[noisy] + noise[noisy, None, None] * eps, 1e-6, 1.0)
            out[noisy] /= out[noisy].sum(2, keepdims=True)
        names = np.asarray(self.granularities)[gran]
        top = out.argmax(2)
        for name in set(names.tolist()):
            sel = names == name
            if name == "rounded":
                out[sel] = np.round(out[sel], self.decimals)
            elif name == "label":
                out[sel] = np.eye(K)[top[sel]]
            elif name == "top_k" and self.top_k < K:
                o = out[sel]
                kth = -np.partition(-o, self.top_k - 1, axis=2)[..., self.top_k - 1 : self.top_k]
                out[sel] = np.where(o >= kth, o, 0.0)
        return out

    def _observe(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        s = self.obs_slices["extractor"]
        ext = np.empty((k, self.observation_spaces["extractor"].shape[0]), np.float32)
        ext[:, s["answer"]] = self.last_answer[idx]
        ext[:, s["answered"]] = self.last_answered[idx]
        ext[:, s["uncertainty"]] = self.last_uncertainty[idx]
        ext[:, s["budget"]] = (1.0 - self.round[idx] / self.rounds)[:, None]
        s = self.obs_slices["guard"]
        grd = np.zeros((k, self.observation_spaces["guard"].shape[0]), np.float32)
        has = self.prev_action[idx, 0] >= 0
        rows = np.flatnonzero(has)
        prev = self.prev_action[idx][has]
        for part, col in (("previous_granularity", 0), ("previous_noise", 1), ("previous_threshold", 2)):
            grd[rows, s[part].start + prev[:, col]] = 1.0
        grd[:, s["extractor_w"]] = self.ext_w[idx, None]
        grd[:, s["benign_w"]] = self.ben_w[idx, None]
        grd[:, s["extractor_flagged"]] = self.ext_flagged[idx, None]
        grd[:, s["benign_flagged"]] = self.ben_flagged[idx, None]
        grd[:, s["benign_utility"]] = self.last_utility[idx, None]
        grd[:, s["round"]] = (self.round[idx] / self.rounds)[:, None]
        np.clip(ext, 0.0, 1.0, out=ext)
        np.clip(grd, 0.0, 1.0, out=grd)
        return {"extractor": ext, "guard": grd}

    def render_ansi(self, i: int) -> str:
        head = f"round {self.round[i]}/{self.rounds}  fidelity {self.fidelity[i]:.3f}"
        if self.prev_action[i, 0] < 0:
            return f"{head}  (no round played yet)"
        g, nz, th = self.prev_action[i]
        return (
            f"{head}  guard: {self.granularities[g]} noise={self.noise_levels[nz]} delta={self.thresholds[th]}  "
            f"W extractor {self.ext_w[i]:.3f}{' FLAGGED' if self.ext_flagged[i] else ''} "
            f"benign {self.ben_w[i]:.3f}{' FLAGGED' if self.ben_flagged[i] else ''}  benign utility {self.last_utility[i]:.3f}  "
            f"rewards extractor {self.last_rewards[i, 0]:+.3f} guard {self.last_rewards[i, 1]:+.3f}"
        )

    def render_rgb(self, i: int) -> np.ndarray:
        """The extractor's last queries with the guarded API's answers, and the guard's view: PRADA's W of the
        extractor and of the benign client against the round's threshold, the copy's fidelity and benign utility."""
        from deploy_envs.core.rendering import PALETTE, mosaic, sketch

        sk = sketch(self, size=(600, 270), grid=(1, 2), width_ratios=(1.5, 1), margins={"left": 0.02, "wspace": 0.25, "bottom": 0.15, "top": 0.8})
        head = f"ExtractionGuard: round {self.round[i]}/{self.rounds}, fidelity {self.fidelity[i]:.2f}"
        m, K = self.batch_size, self.K
        if self.prev_action[i, 0] < 0:
            guard, threshold = "no round played yet", None
        else:
            g, nz, th = self.prev_action[i]
            threshold = self.thresholds[th]
            guard = f"guard: {self.granularities[g]}, noise {self.noise_levels[nz]}, delta {threshold}"
        ax_q, ax_b = sk.begin(f"{head}\n{guard}; rewards extractor {self.last_rewards[i, 0]:+.2f}, guard {self.last_rewards[i, 1]:+.2f}", fontsize=8)
        q = int(self.queries[i])
        shown = min(m, 8)
        rows = range(max(0, q - m), max(0, q - m) + shown) if q else range(0)
        ans = self.last_answer[i].reshape(m, K)
        labels, colours = [], []
        for j, _ in enumerate(rows):
            if self.last_answered[i, j] > 0:
                k = int(ans[j].argmax())
                labels.append(f"{k} ({ans[j, k]:.2f})")
                colours.append(PALETTE["black"])
            else:
                labels.append("refused")
                colours.append(PALETTE["red"])
        mosaic(ax_q, [self.xq[i, r].numpy() for r in rows], labels, cols=4, colours=colours, title="extractor's last queries -> answers")
        bars = [self.ext_w[i], self.ben_w[i], self.fidelity[i], self.last_utility[i]]
        flags = [self.ext_flagged[i], self.ben_flagged[i], False, False]
        ax_b.bar(range(4), bars, color=[PALETTE["red"] if f else c for f, c in zip(flags, (PALETTE["orange"], PALETTE["blue"], PALETTE["green"], PALETTE["grey"]))])
        if threshold is not None and threshold > 0:
            ax_b.hlines(threshold, -0.4, 1.4, color=PALETTE["black"], ls="--", lw=1)
        ax_b.set_xticks(range(4), ["W\nextractor", "W\nbenign", "fidelity", "benign\nutility"], fontsize=7)
        ax_b.set_ylim(0, 1.05)
        ax_b.set_title("guard's view (red: flagged)", fontsize=8)
        ax_b.tick_params(labelsize=7)
        return sk.finish()


def extractor_seat(game: Any) -> Any:
    """An object that :meth:`deploy_envs.topics.extraction.baselines.ExtractionAgent.setup` accepts, for the game's extractor.

    ``game`` is the game (``make_game("deploy_envs/ExtractionGuard-v0")``) or an :class:`ExtractionGuardCore`;
    the baseline then acts on batches of extractor observations (``(num_envs, obs_dim)``).
    """
    core = getattr(game, "core", game)
    if not isinstance(core, ExtractionGuardCore):
        raise ValueError(f"game={game!r} is not an ExtractionGuard-v0 game or core")
    view = SimpleNamespace(
        num_envs=core.num_envs, batch_size=core.batch_size, d=core.d, K=core.K, max_queries=core.max_queries,
        obs_slices=dict(core.obs_slices["extractor"]), api=core.api,
    )
    return SimpleNamespace(unwrapped=SimpleNamespace(core=view))

"""The model API: a victim classifier behind a prediction interface, with accounting and defenses.

Every model-API environment (``ModelExtraction-v0``, and later membership inference)
talks to a :class:`ModelAPI`, never to the model itself. The API

* answers batches of queries at a chosen **output granularity**: ``"label"``
  (one-hot of the top class), ``"top_k"`` (the ``top_k`` largest probabilities, the
  rest zero), ``"probabilities"`` (the full softmax) or ``"rounded"`` (probabilities
  rounded to ``decimals`` decimals) - the granularities Tramer et al. 2016 study;
* counts queries per client against a **budget** and a **rate limit** (a token
  bucket of ``rate_limit`` queries per ``rate_window`` seconds), and **logs** every
  call (a bounded in-memory log plus ``logging`` at DEBUG level);
* applies a **defense**: ``"none"``, ``"rounding"`` (scores rounded to
  ``decimals``), ``"noise"`` (Gaussian noise of std ``noise_scale`` added to the
  probabilities, clipped and renormalised, so the top label can change), or
  ``"prada"`` (Juuti et al. 2019, see :class:`PradaDetector`), which refuses
  (``prada_response="refuse"``) or poisons (``"poison"``: random probability vectors
  from a flat Dirichlet, marked as normal answers) a client's answers once it
  flags the client;
* answers queries outside the input domain (wrong shape, NaN or inf, values
  outside ``[0, 1]``) with an error, never with a crash or an exception.

The answer never carries gradients, weights or logits. Queries are rows of
``d = prod(input_shape)`` floats in ``[0, 1]`` (images are flattened).

The hot path (:meth:`ModelAPI.query_many`) answers many clients' queries with one
forward pass of the victim; :meth:`ModelAPI.query` is the same for one client.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_envs.core.validation import check_choice, check_number, check_positive, check_probability

#: the HTTP header that carries a client's API key (server and client)
KEY_HEADER = "X-API-Key"

logger = logging.getLogger(__name__)

OUTPUTS = ("label", "top_k", "probabilities", "rounded")
DEFENSES = ("none", "rounding", "noise", "prada")
PRADA_RESPONSES = ("refuse", "poison")


# --------------------------------------------------------------------- PRADA
class PradaDetector:
    """PRADA's per-client detector (Juuti et al. 2019, "PRADA: Protecting against DNN Model Stealing Attacks", EuroS&P, Alg. 1).

    For each new query ``x`` with predicted class ``c``: if the client's growing set
    ``G_c`` is empty, ``x`` joins it; otherwise the L2 distance ``d`` from ``x`` to its
    nearest member of ``G_c`` joins the distance set ``D``, and if ``d`` exceeds the
    class threshold ``T_c``, ``x`` joins ``G_c`` and ``T_c`` becomes
    ``max(T_c, mean(D_Gc) - std(D_Gc))`` over the distances that admitted members.
    Once ``D`` holds ``min_distances`` values (100 in the reference code) and then
    every ``check_every`` (10) new ones, the Shapiro-Wilk statistic ``W`` of ``D`` is
    computed; ``W < delta`` (0.9 in the reference code) flags the client for good.
    Natural queries give roughly normal nearest-neighbour distances; synthetic
    queries made by small steps from earlier ones (Jacobian-based augmentation) do not.
    """

    def __init__(self, delta: float = 0.9, min_distances: int = 100, check_every: int = 10) -> None:
        self.delta = delta
        self.min_distances = min_distances
        self.check_every = check_every
        self.growing: dict[int, list[np.ndarray]] = {}
        self.admitted: dict[int, list[float]] = {}
        self.threshold: dict[int, float] = {}
        self.distances: list[float] = []
        self.flagged = False
        self.last_w: float | None = None

    def observe(self, x: np.ndarray, classes: np.ndarray) -> int | None:
        """Feed queries ``x`` ``(n, d)`` with the victim's classes; return the row at which the client got flagged (or None)."""
        from scipy.stats import shapiro

        for j in range(len(x)):
            if self.flagged:
                return j
            c = int(classes[j])
            members = self.growing.get(c)
            if not members:
                self.growing[c] = [x[j]]
                self.admitted[c] = []
                self.threshold[c] = 0.0
                continue
            g = np.asarray(members)
            dmin = float(np.sqrt(((g - x[j]) ** 2).sum(1)).min())
            self.distances.append(dmin)
            if dmin > self.threshold[c]:
                members.append(x[j])
                adm = self.admitted[c]
                adm.append(dmin)
                self.threshold[c] = max(self.threshold[c], float(np.mean(adm) - np.std(adm)))
            n = len(self.distances)
            if n >= self.min_distances and (n - self.min_distances) % self.check_every == 0:
                dist = np.asarray(self.distances)
                # all distances equal: as far from normal as it gets (shapiro is undefined there)
                w = 0.0 if np.ptp(dist) == 0 else float(shapiro(dist).statistic)
                self.last_w = w
                if w < self.delta:
                    self.flagged = True
                    logger.info("PRADA flagged a client: Shapiro-Wilk W=%.3f < %.3f after %d distances", w, self.delta, n)
                    return j + 1
        return None


# ------------------------------------------------------------------ answers
@dataclass
class Answer:
    """The API's answer to one client's batch of ``n`` queries.

    ``outputs`` ``(n, K)`` float32: one-hot (label), masked probabilities (top-k) or
    probabilities; zero rows where refused. ``labels`` ``(n,)``: the top class, -1
    where refused. ``ok`` ``(n,)``: answered or not; ``errors``: one reason per
    refused row (``""`` where answered).
    """

    outputs: np.ndarray
    labels: np.ndarray
    ok: np.ndarray
    errors: list[str]
    flagged: bool
    queries_used: int
    budget_left: int | None
    request_error: str | None = None
    """Why the whole request was refused (malformed), or None."""

    @property
    def error(self) -> str | None:
        """The request's refusal reason or the first row's, or None if every row was answered."""
        return self.request_error or next((e for e in self.errors if e), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the HTTP server returns)."""
        return {
            "outputs": self.outputs.tolist(),
            "labels": self.labels.tolist(),
            "ok": self.ok.tolist(),
            "errors": self.errors,
            "error": self.error,
            "flagged": self.flagged,
            "queries_used": self.queries_used,
            "budget_left": self.budget_left,
        }


@dataclass
class BatchAnswer:
    """Answers of ``B`` clients to ``m`` queries each: ``outputs`` ``(B, m, K)``, ``labels``/``ok`` ``(B, m)``, ``flagged`` ``(B,)``.

    ``reason`` ``(B, m)`` int8 codes of refusals (index into :data:`REASONS`, 0 = answered).
    """

    outputs: np.ndarray
    labels: np.ndarray
    ok: np.ndarray
    flagged: np.ndarray
    reason: np.ndarray


REASONS = (
    "",
    "query is not finite (NaN or inf)",
    "query is outside the input domain [0, 1]",
    "client is over its query budget",
    "client is over its rate limit",
    "client was flagged by the PRADA detector; answers refused",
)
_NONFINITE, _DOMAIN, _BUDGET, _RATE, _FLAGGED = 1, 2, 3, 4, 5


@dataclass
class ClientState:
    used: int = 0
    tokens: float = 0.0
    last_refill: float = 0.0
    detector: PradaDetector | None = None
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    @property
    def flagged(self) -> bool:
        return self.detector is not None and self.detector.flagged


# ---------------------------------------------------------------------- API
def resolve_victim(victim: Any, dataset: str) -> tuple[nn.Module, str]:
    """A torch module for ``victim``: ``"linear"`` (logistic regression), a zoo name, an ``nn.Module`` or a fitted sklearn-like linear model."""
    from deploy_envs.models.linear_victim import LinearVictim, linear_victim

    if isinstance(victim, nn.Module):
        return victim, type(victim).__name__
    if isinstance(victim, str):
        if victim in ("linear", f"{dataset}-linear"):
            return linear_victim(dataset), f"{dataset}-linear"
        from deploy_envs.models.zoo import load_model, resolve_name

        name = resolve_name(victim, dataset)
        return load_model(name), name
    if hasattr(victim, "coef_") and hasattr(victim, "intercept_"):
        return LinearVictim.from_sklearn(victim), f"{type(victim).__name__}"
    raise ValueError(
        f"victim={victim!r} must be 'linear', a zoo model name (e.g. 'standard'), a torch.nn.Module "
        "or a fitted linear model with coef_ and intercept_"
    )


class ModelAPI:
    """A prediction API in front of a victim classifier (see the module docstring).

    Arguments: ``victim`` (``"linear"``, a zoo name such as ``"standard"``, an
    ``nn.Module`` or a fitted sklearn-like linear model), ``dataset`` (sets the
    input shape and the number of classes), ``output`` (one of :data:`OUTPUTS`),
    ``top_k``, ``decimals``, ``defense`` (one of :data:`DEFENSES`), ``noise_scale``,
    ``budget`` (queries per client, None = unlimited), ``rate_limit`` (queries per
    ``rate_window`` seconds per client, None = unlimited), ``prada_delta``,
    ``prada_min_distances``, ``prada_check_every``, ``prada_response``,
    ``log_size`` (records kept in :attr:`log`), ``seed`` (per-client generators for
    noise and poison when the caller gives none), ``device``, ``clock`` (for the
    rate limit; ``time.monotonic`` by default).
    """

    def __init__(
        self,
        victim: Any = "standard",
        *,
        dataset: str = "digits",
        output: str = "probabilities",
        top_k: int = 3,
        decimals: int = 2,
        defense: str = "none",
        noise_scale: float = 0.1,
        budget: int | None = None,
        rate_limit: float | None = None,
        rate_window: float = 1.0,
        prada_delta: float = 0.9,
        prada_min_distances: int = 100,
        prada_check_every: int = 10,
        prada_response: str = "refuse",
        log_size: int = 10_000,
        seed: int | None = None,
        device: str = "cpu",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from deploy_envs.data import load_dataset

        self.output = check_choice("output", output, OUTPUTS)
        self.defense = check_choice("defense", defense, DEFENSES)
        self.decimals = check_number("decimals", decimals, low=0, high=8, integer=True)
        self.noise_scale = check_positive("noise_scale", noise_scale, allow_zero=True)
        self.budget = None if budget is None else check_positive("budget", budget, integer=True)
        self.rate_limit = None if rate_limit is None else check_positive("rate_limit", rate_limit)
        self.rate_window = check_positive("rate_window", rate_window)
        self.prada_delta = check_probability("prada_delta", prada_delta)
        self.prada_min_distances = check_positive("prada_min_distances", prada_min_distances, integer=True)
        self.prada_check_every = check_positive("prada_check_every", prada_check_every, integer=True)
        self.prada_response = check_choice("prada_response", prada_response, PRADA_RESPONSES)
        self.log_size = check_positive("log_size", log_size, integer=True)
        self.seed = seed
        self.clock = clock
        ds = load_dataset(dataset)
        self.dataset = dataset
        self.input_shape = tuple(ds.image_shape)
        self.d = int(np.prod(self.input_shape))
        self.num_classes = int(ds.num_classes)
        self.top_k = check_number("top_k", top_k, low=1, high=self.num_classes, integer=True)
        model, self.victim_name = resolve_victim(victim, dataset)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.clients: dict[str, ClientState] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=self.log_size)
        self.total_queries = 0

    def __repr__(self) -> str:
        return f"ModelAPI(victim={self.victim_name!r}, output={self.output!r}, defense={self.defense!r}, budget={self.budget}, clients={len(self.clients)})"

    # ------------------------------------------------------------- clients
    def client(self, name: str) -> ClientState:
        st = self.clients.get(name)
        if st is None:
            seed = None if self.seed is None else [self.seed, *name.encode()]
            st = ClientState(tokens=self.rate_limit or 0.0, last_refill=self.clock(), rng=np.random.default_rng(seed))
            if self.defense == "prada":
                st.detector = PradaDetector(self.prada_delta, self.prada_min_distances, self.prada_check_every)
            self.clients[name] = st
        return st

    def reset_client(self, name: str) -> None:
        """Forget a client's usage, rate and detector state (a new client under the same name)."""
        self.clients.pop(name, None)

    def is_flagged(self, name: str) -> bool:
        return name in self.clients and self.clients[name].flagged

    # --------------------------------------------------------------- logits
    @torch.no_grad()
    def victim_probabilities(self, x_flat: np.ndarray) -> np.ndarray:
        """Softmax of the victim on valid flat queries ``(n, d)`` (float64); not counted, not defended: for the owner only."""
        if len(x_flat) == 0:
            return np.zeros((0, self.num_classes))
        x = torch.from_numpy(np.ascontiguousarray(x_flat, dtype=np.float32)).to(self.device).view(-1, *self.input_shape)
        z = self.model(x).double()
        return torch.softmax(z, 1).cpu().numpy()

    # ------------------------------------------------------------- queries
    def query(self, x: Any, client: str = "default", rng: np.random.Generator | None = None) -> Answer:
        """Answer one client's queries: ``x`` is one query ``(d,)``/``input_shape`` or a batch ``(n, d)``/``(n, *input_shape)``.

        A malformed request (not numeric, wrong shape) is answered with an error in
        every row (an empty answer if the number of rows cannot be told); never raises.
        """
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError):
            return self._error_answer(client, 0, f"query is not an array of numbers (got {type(x).__name__})")
        if arr.shape == (self.d,) or arr.shape == self.input_shape:
            arr = arr.reshape(1, self.d)
        elif arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == self.d and arr.shape[1:] in ((self.d,), self.input_shape):
            arr = arr.reshape(len(arr), self.d)
        else:
            n = arr.shape[0] if arr.ndim >= 2 else (1 if arr.ndim == 1 else 0)
            return self._error_answer(client, n, f"query has shape {arr.shape}; expected ({self.d},), {self.input_shape} or a batch (n, {self.d})")
        ans = self.query_many(arr[None], [client], None if rng is None else [rng])
        st = self.clients[client]
        return Answer(
            outputs=ans.outputs[0],
            labels=ans.labels[0],
            ok=ans.ok[0],
            errors=[REASONS[r] for r in ans.reason[0]],
            flagged=bool(ans.flagged[0]),
            queries_used=st.used,
            budget_left=None if self.budget is None else self.budget - st.used,
        )

    def _error_answer(self, client: str, n: int, reason: str) -> Answer:
        st = self.client(client)
        self._record(client, n, 0, n, st.flagged, reason)
        return Answer(
            outputs=np.zeros((n, self.num_classes), np.float32),
            labels=np.full(n, -1, np.int64),
            ok=np.zeros(n, bool),
            errors=[reason] * n,
            flagged=st.flagged,
            queries_used=st.used,
            budget_left=None if self.budget is None else self.budget - st.used,
            request_error=reason,
        )

    def query_many(self, x: np.ndarray, clients: Sequence[str], rngs: Sequence[np.random.Generator] | None = None) -> BatchAnswer:
        """Answer ``m`` queries from each of ``B`` clients, ``x`` of shape ``(B, m, d)``, with one forward pass.

        ``rngs[b]`` (optional) draws client ``b``'s noise or poison, so a caller can
        make answers reproducible per client; otherwise each client's own generator does.
        """
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[0] != len(clients) or x.shape[2] != self.d:
            raise ValueError(f"x has shape {x.shape}; expected ({len(clients)}, m, {self.d}) for {len(clients)} clients")
        B, m, _ = x.shape
        K = self.num_classes
        states = [self.client(c) for c in clients]
        reason = np.zeros((B, m), np.int8)
        # domain checks: two reductions on the usual valid batch
        finite = np.isfinite(x).all(2)
        if not finite.all():
            reason[~finite] = _NONFINITE
        with np.errstate(invalid="ignore"):
            inside = ((x >= 0.0) & (x <= 1.0)).all(2)
        reason[(reason == 0) & ~inside] = _DOMAIN
        # accounting: budget, rate, a client already flagged
        limited = self.budget is not None or self.rate_limit is not None or self.defense == "prada"
        if limited:
            now = self.clock()
            for b, st in enumerate(states):
                valid = np.flatnonzero(reason[b] == 0)
                if st.flagged and self.prada_response == "refuse":
                    reason[b, valid] = _FLAGGED
                    continue
                allow = len(valid)
                if self.budget is not None:
                    allow = min(allow, max(0, self.budget - st.used))
                    reason[b, valid[allow:]] = _BUDGET
                if self.rate_limit is not None:
                    st.tokens = min(self.rate_limit, st.tokens + (now - st.last_refill) * self.rate_limit / self.rate_window)
                    st.last_refill = now
                    fit = min(allow, int(st.tokens))
                    reason[b, valid[fit:allow]] = _RATE
                    allow = fit
                    st.tokens -= allow
        ok = reason == 0
        rows = np.flatnonzero(ok.reshape(-1))
        probs = np.zeros((B * m, K))
        probs[rows] = self.victim_probabilities(x.reshape(B * m, self.d)[rows])
        probs = probs.reshape(B, m, K)
        flagged = np.zeros(B, bool)
        poison = np.zeros((B, m), bool)
        for st, n_ok in zip(states, ok.sum(1).tolist()):
            st.used += n_ok
        for b, st in enumerate(states):
            if st.detector is not None:
                n_ok = int(ok[b].sum())
                if n_ok and not st.flagged:
                    sel = np.flatnonzero(ok[b])
                    at = st.detector.observe(x[b, sel], probs[b, sel].argmax(1))
                    if at is not None:  # rows after the flag get the response
                        late = sel[at:]
                        if self.prada_response == "refuse":
                            reason[b, late] = _FLAGGED
                            ok[b, late] = False
                            st.used -= len(late)
                        else:
                            poison[b, late] = True
                elif st.flagged and self.prada_response == "poison":
                    poison[b] = ok[b]
                flagged[b] = st.flagged
        self.total_queries += int(ok.sum())
        outputs = self._transform(probs, ok, poison, states, rngs)
        labels = np.where(ok, outputs.argmax(2), -1)
        if self.output == "label":
            outputs = np.eye(K, dtype=np.float32)[labels.clip(0)] * ok[..., None]
        elif self.output == "top_k" and self.top_k < K:
            kth = -np.partition(-outputs, self.top_k - 1, axis=2)[..., self.top_k - 1 : self.top_k]
            outputs = np.where(outputs >= kth, outputs, 0.0)
        outputs = outputs.astype(np.float32)
        outputs[~ok] = 0.0
        self._record_many(clients, m, ok.sum(1).tolist(), flagged.tolist(), reason.max(1).tolist() if m else [0] * B)
        return BatchAnswer(outputs, labels, ok, flagged, reason)

    def _transform(self, probs, ok, poison, states, rngs) -> np.ndarray:
        """Apply the defense (noise, rounding, poison) to the victim's probabilities ``(B, m, K)``."""
        out = probs
        B, m, K = probs.shape

        def gen(b):
            return states[b].rng if rngs is None else rngs[b]

        if self.defense == "noise" and self.noise_scale > 0:
            noise = np.stack([gen(b).normal(0.0, self.noise_scale, (m, K)) for b in range(B)])
            out = np.clip(out + noise, 1e-6, 1.0)
            out = out / out.sum(2, keepdims=True)
        if poison.any():
            out = out.copy()
            for b in np.flatnonzero(poison.any(1)):
                rows = np.flatnonzero(poison[b])
                out[b, rows] = gen(b).dirichlet(np.ones(K), len(rows))
        if self.defense == "rounding" or self.output == "rounded":
            out = np.round(out, self.decimals)
        return out

    def _record_many(self, clients: Sequence[str], n: int, answered: list[int], flagged: list[bool], reasons: list[int]) -> None:
        """One log record per client of a :meth:`query_many` call (counts computed over the batch at once)."""
        now = time.time()
        debug = logger.isEnabledFor(logging.DEBUG)
        for c, a, f, r in zip(clients, answered, flagged, reasons):
            self.log.append({"time": now, "client": c, "queries": n, "answered": a, "refused": n - a, "flagged": f, "reason": REASONS[r]})
            if debug:
                logger.debug("query client=%s n=%d answered=%d refused=%d flagged=%s %s", c, n, a, n - a, f, REASONS[r])

    def _record(self, client: str, n: int, answered: int, refused: int, flagged: bool, reason: str) -> None:
        rec = {"time": time.time(), "client": client, "queries": n, "answered": answered, "refused": refused, "flagged": flagged, "reason": reason}
        self.log.append(rec)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("query client=%s n=%d answered=%d refused=%d flagged=%s %s", client, n, answered, refused, flagged, reason)

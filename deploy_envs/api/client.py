"""An HTTP client for a served model API, with the query interface of the in-process :class:`ModelAPI`.

:class:`RemoteModelAPI` answers ``query(x, client)`` with the same
:class:`~deploy_envs.api.model_api.Answer` (bit-identical outputs: float32 values
survive the JSON round trip) and ``query_many(x, clients)`` with the same
:class:`~deploy_envs.api.model_api.BatchAnswer`, so an attack or an env
(``ModelExtraction-v0``'s ``api=`` argument) runs against a served model exactly as
in-process. Differences a caller should know:

* the client identity is the API key: ``api_key`` for every client name, or
  ``keys={client name: key}`` for several identities (one per env copy);
* the server keeps budget, rate and detector state: :meth:`reset_client` cannot
  reset them (it only logs), and ``rngs`` cannot steer the server's noise;
* refusals of queries (budget, rate, flagged, out of domain) come back as answers,
  as in-process; a missing or wrong key, an oversized request, a busy server
  (after ``retries``) or a broken connection raise :class:`RemoteAPIError`.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deploy_envs.api.model_api import KEY_HEADER, REASONS, Answer, BatchAnswer
from deploy_envs.core.extras import require

logger = logging.getLogger(__name__)
_ANSWER_STATUSES = (200, 402, 403, 422, 429)


class RemoteAPIError(RuntimeError):
    """The server refused the request as a whole (401, 413, 400, 503, 5xx) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteModelAPI:
    """A served model API (``deploy-envs serve``) behind the in-process query interface.

    Arguments: ``url`` (e.g. ``"http://127.0.0.1:8000"``), ``api_key`` (used for any
    client name not in ``keys``), ``keys`` (client name -> API key), ``timeout``
    (seconds per request), ``retries`` (on 503 "busy", with ``Retry-After`` capped
    at 2 s), ``http_client`` (an ``httpx.Client`` to use instead of a new one, e.g.
    FastAPI's ``TestClient``). Reads ``/v1/info`` once at construction, which
    checks the key and sets ``d``, ``input_shape``, ``num_classes``, ``output``.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        http_client: Any = None,
    ) -> None:
        httpx = require("httpx", extra="serve", feature="the HTTP model API client")

        if api_key is None and not keys:
            raise ValueError("api_key=None and keys=None: give an API key (api_key=...) or keys={client: key}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.keys = dict(keys or {})
        self.retries = int(retries)
        self._own = http_client is None
        self.http = httpx.Client(timeout=timeout) if http_client is None else http_client
        first = api_key if api_key is not None else next(iter(self.keys.values()))
        self.info = self._request("GET", "/v1/info", first).json()
        self.dataset = self.info["dataset"]
        self.input_shape = tuple(self.info["input_shape"])
        self.d = int(self.info["d"])
        self.num_classes = int(self.info["num_classes"])
        self.output = self.info["output"]
        self.budget = self.info["budget"]
        self.max_batch = int(self.info["max_batch"])
        self.victim_name = f"remote:{self.url}"

    def __repr__(self) -> str:
        return f"RemoteModelAPI(url={self.url!r}, output={self.output!r}, clients={len(self.keys) or 1})"

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> RemoteModelAPI:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ transport
    def _key(self, client: str) -> str:
        key = self.keys.get(client, self.api_key)
        if key is None:
            raise ValueError(f"client={client!r} has no API key; known clients: {', '.join(map(repr, self.keys))}")
        return key

    def _request(self, method: str, path: str, key: str, content: bytes | None = None):
        httpx = require("httpx", extra="serve", feature="the HTTP model API client")

        headers = {KEY_HEADER: key}
        if content is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, self.url + path, content=content, headers=headers)
            except httpx.HTTPError as e:
                raise RemoteAPIError(f"{method} {self.url}{path} failed: {type(e).__name__}: {e}") from e
            if r.status_code == 503 and attempt < self.retries:
                time.sleep(min(2.0, float(r.headers.get("Retry-After", "1") or 1)) * (0.25 + 0.25 * attempt))
                continue
            break
        if r.status_code == 200 or (path == "/v1/query" and r.status_code in _ANSWER_STATUSES):
            return r
        try:
            msg = r.json().get("error", r.text)
        except ValueError:
            msg = r.text
        raise RemoteAPIError(f"{method} {self.url}{path}: HTTP {r.status_code}: {msg}", r.status_code)

    # -------------------------------------------------------------- queries
    def query(self, x: Any, client: str = "default", rng: np.random.Generator | None = None) -> Answer:
        """Answer one client's queries over HTTP, as :meth:`ModelAPI.query` does (``rng`` is ignored: noise is drawn server-side)."""
        key = self._key(client)
        inputs = x.tolist() if isinstance(x, np.ndarray) else x
        try:
            body = json.dumps({"inputs": inputs}, allow_nan=True).encode()  # NaN travels; the server refuses the row
        except (TypeError, ValueError):
            return Answer(np.zeros((0, self.num_classes), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), [],
                          False, 0, None, f"query is not an array of numbers (got {type(x).__name__})")
        d = self._request("POST", "/v1/query", key, body).json()
        n = len(d["ok"])
        return Answer(
            outputs=np.asarray(d["outputs"], np.float32).reshape(n, self.num_classes),
            labels=np.asarray(d["labels"], np.int64).reshape(n),
            ok=np.asarray(d["ok"], bool).reshape(n),
            errors=list(d["errors"]),
            flagged=bool(d["flagged"]),
            queries_used=int(d["queries_used"]),
            budget_left=d["budget_left"],
            request_error=d.get("request_error"),
        )

    def query_many(self, x: np.ndarray, clients: Sequence[str], rngs: Sequence[np.random.Generator] | None = None) -> BatchAnswer:
        """``m`` queries from each of ``B`` clients, ``x`` ``(B, m, d)``: one request per client (each with its own key)."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[0] != len(clients) or x.shape[2] != self.d:
            raise ValueError(f"x has shape {x.shape}; expected ({len(clients)}, m, {self.d}) for {len(clients)} clients")
        B, m, _ = x.shape
        outputs = np.zeros((B, m, self.num_classes), np.float32)
        labels = np.full((B, m), -1, np.int64)
        ok = np.zeros((B, m), bool)
        flagged = np.zeros(B, bool)
        reason = np.zeros((B, m), np.int8)
        for b, c in enumerate(clients):
            for s in range(0, m, self.max_batch):
                a = self.query(x[b, s : s + self.max_batch], c)
                e = s + len(a.ok)
                outputs[b, s:e], labels[b, s:e], ok[b, s:e] = a.outputs, a.labels, a.ok
                reason[b, s:e] = [REASONS.index(r) if r in REASONS else 2 for r in a.errors]
                flagged[b] = a.flagged
        return BatchAnswer(outputs, labels, ok, flagged, reason)

    def reset_client(self, name: str) -> None:
        """No-op: the server owns budget, rate and detector state (a new identity needs a new key)."""
        logger.info("RemoteModelAPI.reset_client(%r): server-side state is kept", name)

    def remaining_budget(self, client: str = "default") -> int | None:
        """The client's budget left, from ``/v1/info``."""
        return self._request("GET", "/v1/info", self._key(client)).json()["budget_left"]

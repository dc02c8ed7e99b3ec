"""The model API over HTTP: a FastAPI app in front of a :class:`~deploy_envs.api.ModelAPI`.

An attack runs against a served model exactly as against an in-process one
(:class:`deploy_envs.api.client.RemoteModelAPI` speaks this protocol); the in-process
path stays the fast default. Started by ``deploy-envs serve`` or :func:`serve`.

Endpoints (every one needs an API key in the ``X-API-Key`` header, or
``Authorization: Bearer <key>``; the key names the client whose budget, rate and
detector state the query counts against):

* ``POST /v1/query`` with the JSON body ``{"inputs": [[...], ...]}`` (rows of
  ``d`` floats in ``[0, 1]``, or image-shaped rows). The answer is
  :meth:`Answer.to_dict <deploy_envs.api.model_api.Answer.to_dict>` plus
  ``request_error``: outputs at the API's granularity, one ``ok`` flag and one error
  string per row. Status codes:

  - ``200``: at least one row answered (refused rows carry their reason);
  - ``401``: missing or unknown API key;
  - ``402``: every row refused because the client is over its query budget;
  - ``403``: every row refused because the PRADA detector flagged the client;
  - ``429``: every row refused by the client's rate limit (``Retry-After`` set);
  - ``422``: every row refused as outside the input domain (NaN, inf, outside
    ``[0, 1]``) or the request has the wrong shape, with the error answer;
  - ``400``: the body is not JSON or has no ``inputs``;
  - ``413``: the body is over ``max_body_bytes`` or has over ``max_batch`` rows;
  - ``503``: more than ``max_concurrency`` requests in flight (load shedding,
    ``Retry-After: 1``): a flood is refused early instead of queueing without bound.

  Bodies of 402/403/422/429 are full answers (as in-process), so a client sees the
  same :class:`Answer` either way; 400/401/413/503 bodies are ``{"error": ...}``.
* ``GET /v1/info``: public facts only: dataset, input shape and domain, classes,
  output granularity (with ``top_k``/``decimals`` where they apply), the budget and
  rate policy, ``max_batch``, and the calling client's ``queries_used`` and
  ``budget_left``. Never weights, gradients, logits, the defense's internals or
  held-out data.

The victim is not thread-safe, so queries are answered one at a time (a lock) in a
worker thread; the event loop keeps accepting, answering 401/413/503 cheaply.
Only loopback hosts are served unless ``allow_remote=True`` (there is no TLS here:
put a reverse proxy in front for anything else).
"""
from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from deploy_envs.api.model_api import KEY_HEADER, REASONS, Answer, ModelAPI
from deploy_envs.core.extras import require
from deploy_envs.core.validation import check_positive

_fastapi = require("fastapi", extra="serve", feature="the HTTP model API")
import anyio  # noqa: E402  (comes with fastapi)
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

logger = logging.getLogger(__name__)

# status of a request none of whose rows was answered, by the (first) refusal reason
_STATUS_BY_REASON = {REASONS[5]: 403, REASONS[3]: 402, REASONS[4]: 429, REASONS[1]: 422, REASONS[2]: 422}
_PRIORITY = (403, 402, 429, 422)


class ConcurrencyLimit:
    """ASGI middleware: at most ``limit`` HTTP requests in flight; the next ones get ``503`` at once."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.shed += 1
            resp = JSONResponse({"error": f"server busy: over {self.limit} requests in flight; retry later"}, 503, headers={"Retry-After": "1"})
            await resp(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _error(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": msg}, status, headers=headers)


def answer_status(ans: Answer) -> int:
    """HTTP status of an answer: 200 if any row was answered, else the status of its strongest refusal."""
    if ans.ok.any():
        return 200
    if ans.request_error is not None:
        return 422
    codes = {_STATUS_BY_REASON.get(e, 422) for e in ans.errors if e}
    return next((c for c in _PRIORITY if c in codes), 422)


def answer_body(ans: Answer) -> dict[str, Any]:
    """The JSON body of an answer: :meth:`Answer.to_dict` plus ``request_error``."""
    return {**ans.to_dict(), "request_error": ans.request_error}


def public_info(api: ModelAPI, client: str, max_batch: int) -> dict[str, Any]:
    """What any client may know: the interface and its own usage; nothing about the model's insides."""
    st = api.clients.get(client)
    used = 0 if st is None else st.used
    info: dict[str, Any] = {
        "dataset": api.dataset,
        "input_shape": list(api.input_shape),
        "d": api.d,
        "input_domain": [0.0, 1.0],
        "num_classes": api.num_classes,
        "classes": list(range(api.num_classes)),
        "output": api.output,
        "max_batch": max_batch,
        "budget": api.budget,
        "rate_limit": api.rate_limit,
        "rate_window": api.rate_window,
        "client": client,
        "queries_used": used,
        "budget_left": None if api.budget is None else api.budget - used,
    }
    if api.output == "top_k":
        info["top_k"] = api.top_k
    if api.output == "rounded" or api.defense == "rounding":
        info["decimals"] = api.decimals  # visible in the answers anyway
    return info


def create_app(
    api: ModelAPI,
    api_keys: Mapping[str, str],
    *,
    max_batch: int = 1024,
    max_body_bytes: int | None = None,
    max_concurrency: int = 32,
) -> FastAPI:
    """A FastAPI app serving ``api``; ``api_keys`` maps each API key to its client id.

    ``max_batch``: rows per request (more: 413); ``max_body_bytes``: request body
    size (more: 413; default ``max_batch * d * 32`` bytes, room for 1024 rows of
    full-precision JSON floats); ``max_concurrency``: requests in flight (more: 503).
    """
    if not isinstance(api, ModelAPI):
        raise ValueError(f"api={api!r} must be a deploy_envs.api.ModelAPI")
    if not isinstance(api_keys, Mapping) or not api_keys:
        raise ValueError(f"api_keys={api_keys!r} must be a non-empty mapping of API key -> client id")
    for k, c in api_keys.items():
        if not isinstance(k, str) or not k or not isinstance(c, str) or not c:
            raise ValueError(f"api_keys has the entry {k!r}: {c!r}; keys and client ids must be non-empty strings")
    max_batch = check_positive("max_batch", max_batch, integer=True)
    max_concurrency = check_positive("max_concurrency", max_concurrency, integer=True)
    if max_body_bytes is None:
        max_body_bytes = max_batch * api.d * 32 + 1024
    max_body_bytes = check_positive("max_body_bytes", max_body_bytes, integer=True)
    keys = [(k.encode(), c) for k, c in api_keys.items()]
    lock = threading.Lock()

    app = FastAPI(title="deploy_envs model API", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.api = api  # for the owner (tests, benchmarks); never sent to clients
    app.state.limits = {"max_batch": max_batch, "max_body_bytes": max_body_bytes, "max_concurrency": max_concurrency}
    app.add_middleware(ConcurrencyLimit, limit=max_concurrency)

    def authenticate(request: Request) -> str | None:
        key = request.headers.get(KEY_HEADER)
        if key is None:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not key:
            return None
        given = key.encode()
        found = None
        for k, c in keys:  # compare against every key, in constant time each
            if hmac.compare_digest(k, given):
                found = c
        return found

    def unauthorized() -> JSONResponse:
        return _error(401, f"missing or unknown API key; send it in the {KEY_HEADER} header", {"WWW-Authenticate": "ApiKey"})

    def parse_and_answer(body: bytes, client: str) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as e:
            return 400, {"error": f"request body is not valid JSON ({type(e).__name__}: {str(e)[:120]})"}
        if not isinstance(payload, dict) or "inputs" not in payload:
            return 400, {"error": 'request body must be a JSON object {"inputs": [[...], ...]}'}
        inputs = payload["inputs"]
        if isinstance(inputs, list) and len(inputs) > max_batch and isinstance(inputs[0], list):
            return 413, {"error": f"{len(inputs)} rows in one request; at most max_batch={max_batch}"}
        with lock:
            ans = api.query(inputs, client)
        return answer_status(ans), answer_body(ans)

    @app.post("/v1/query")
    async def query(request: Request) -> JSONResponse:
        client = authenticate(request)
        if client is None:
            return unauthorized()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            return _error(413, f"request body of {length} bytes; at most max_body_bytes={max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return _error(413, f"request body over max_body_bytes={max_body_bytes}")
            chunks.append(chunk)
        status, body = await anyio.to_thread.run_sync(parse_and_answer, b"".join(chunks), client)
        headers = {"Retry-After": str(max(1, int(api.rate_window)))} if status == 429 else None
        return JSONResponse(body, status, headers=headers)

    @app.get("/v1/info")
    async def info(request: Request) -> JSONResponse:
        client = authenticate(request)
        if client is None:
            return unauthorized()
        return JSONResponse(public_info(api, client, max_batch))

    return app


# ------------------------------------------------------------------ running
def check_host(host: str, allow_remote: bool = False) -> str:
    """``host`` if it is a loopback address (or ``allow_remote``); a ValueError otherwise."""
    if host == "localhost":
        return host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(
            f"host={host!r} is not a loopback address; allowed: 127.0.0.1, ::1, localhost "
            "(pass allow_remote=True to serve on other interfaces, behind TLS)"
        )
    return host


def new_keys(clients: list[str] | tuple[str, ...] = ("client",)) -> dict[str, str]:
    """Fresh random API keys, one per client id: ``{key: client}``."""
    return {secrets.token_urlsafe(24): c for c in clients}


def _config(app: FastAPI, host: str, port: int, log_level: str, max_concurrency: int):
    uvicorn = require("uvicorn", extra="serve", feature="the HTTP model API server")

    # load is shed by the app's own ConcurrencyLimit, which answers the documented JSON 503;
    # uvicorn's limit_concurrency is left off, since past it uvicorn answers a plain-text 503
    # (and counts idle keep-alive connections toward it). Sockets stay bounded by the listen
    # backlog, the keep-alive timeout and the process's file-descriptor limit.
    del max_concurrency
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=None,
                          timeout_keep_alive=5, backlog=256, access_log=False, lifespan="off")


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False,
                    log_level: str = "warning", start_timeout: float = 20.0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL (``port=0``: a free port)."""
    uvicorn = require("uvicorn", extra="serve", feature="the HTTP model API server")

    check_host(host, allow_remote)
    limit = getattr(app.state, "limits", {}).get("max_concurrency", 32)
    server = uvicorn.Server(_config(app, host, port, log_level, limit))
    thread = threading.Thread(target=server.run, name="deploy-envs-serve", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > start_timeout:
            server.should_exit = True
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    victim: Any = "standard",
    granularity: str = "probabilities",
    defense: str = "none",
    keys: Mapping[str, str] | None = None,
    *,
    allow_remote: bool = False,
    max_batch: int = 1024,
    max_concurrency: int = 32,
    log_level: str = "warning",
    **api_kwargs: Any,
) -> None:
    """Serve a :class:`ModelAPI` over HTTP with uvicorn until interrupted (blocks).

    ``granularity`` is the API's ``output``; ``api_kwargs`` go to :class:`ModelAPI`
    (``dataset``, ``budget``, ``rate_limit``, ``top_k``, ``decimals``, ``noise_scale``,
    ``prada_response``, ``seed``, ...). ``keys`` maps API key -> client id; None makes
    one random key for client ``"client"`` and logs it at WARNING level. Loopback
    only unless ``allow_remote=True``.
    """
    uvicorn = require("uvicorn", extra="serve", feature="the HTTP model API server")

    check_host(host, allow_remote)
    api = ModelAPI(victim, output=granularity, defense=defense, **api_kwargs)
    if keys is None:
        keys = new_keys()
        logger.warning("no API keys given; generated %s", ", ".join(f"{c}: {k}" for k, c in keys.items()))
    app = create_app(api, keys, max_batch=max_batch, max_concurrency=max_concurrency)
    logger.info("serving %r on http://%s:%d for %d client(s)", api, host, port, len(keys))
    uvicorn.Server(_config(app, host, port, log_level, max_concurrency)).run()

"""The model API over HTTP: same answers as in-process, keys, refusals, bad bodies, no leaks, floods (loopback only)."""
from __future__ import annotations

import asyncio
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

import gymnasium as gym
import httpx
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from deploy_envs.api import ModelAPI
from deploy_envs.api.cli_serve import serve_cmd
from deploy_envs.api.client import RemoteAPIError, RemoteModelAPI
from deploy_envs.api.server import (
    ConcurrencyLimit,
    check_host,
    create_app,
    serve,
    serve_in_thread,
)
from deploy_envs.data import load_dataset

with warnings.catch_warnings():  # starlette's TestClient announces a move to httpx2; it works with httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEYS = {"key-alice-0123456789": "alice", "key-bob-0123456789": "bob"}
ALICE = {"X-API-Key": "key-alice-0123456789"}


@pytest.fixture(scope="module")
def x():
    ds = load_dataset("digits")
    return ds.x_test.reshape(len(ds.y_test), -1).astype(np.float32)


def _remote(app, key="key-alice-0123456789", **kw):
    return RemoteModelAPI("http://testserver", key, http_client=TestClient(app), **kw)


@pytest.fixture(scope="module")
def live():
    """A real uvicorn server on a free loopback port, in a background thread."""
    app = create_app(ModelAPI("standard"), KEYS, max_concurrency=8)
    with serve_in_thread(app, "127.0.0.1", 0, log_level="error") as url:
        yield url, app


@pytest.mark.parametrize("output", ["probabilities", "label", "top_k", "rounded"])
def test_answers_over_http_equal_in_process_answers(x, output):
    local = ModelAPI("standard", output=output, top_k=2)
    remote = _remote(create_app(ModelAPI("standard", output=output, top_k=2), KEYS))
    for batch in (x[:1], x[:37], x[0]):
        a, b = local.query(batch, "alice"), remote.query(batch)
        np.testing.assert_array_equal(b.outputs, a.outputs)  # bit-identical through JSON
        assert b.outputs.dtype == np.float32 and b.labels.tolist() == a.labels.tolist() and b.ok.all()
        assert (b.errors, b.queries_used, b.budget_left, b.flagged) == (a.errors, a.queries_used, a.budget_left, a.flagged)
    assert remote.d == 64 and remote.input_shape == (1, 8, 8) and remote.num_classes == 10 and remote.output == output


def test_answers_over_a_real_socket_equal_in_process(live, x):
    url, _ = live
    assert url.startswith("http://127.0.0.1:")
    local = ModelAPI("standard")
    with RemoteModelAPI(url, "key-bob-0123456789") as remote:
        b = remote.query(x[:100], "bob")
        np.testing.assert_array_equal(b.outputs, local.query(x[:100]).outputs)
        many = remote.query_many(np.stack([x[:5], x[5:10]]), ["bob", "bob"])
        np.testing.assert_array_equal(many.outputs, local.query_many(np.stack([x[:5], x[5:10]]), ["p", "q"]).outputs)


def test_extraction_env_runs_against_a_served_model_as_in_process(live):
    url, _ = live
    kw = {"holdout": 60, "batch_size": 5, "max_queries": 20}
    with RemoteModelAPI(url, "key-bob-0123456789") as remote:
        envs = [gym.make("deploy_envs/ModelExtraction-v0", **kw), gym.make("deploy_envs/ModelExtraction-v0", api=remote, **kw)]
        obs = [e.reset(seed=3)[0] for e in envs]
        np.testing.assert_array_equal(obs[0], obs[1])
        envs[0].action_space.seed(0)
        for _ in range(4):
            a = envs[0].action_space.sample()
            (o0, r0, t0, _, i0), (o1, r1, t1, _, i1) = envs[0].step(a), envs[1].step(a)
            np.testing.assert_array_equal(o0, o1)
            assert (r0, t0, i0["fidelity"], i0["answered"]) == (r1, t1, i1["fidelity"], i1["answered"])
        assert t1 and i1["answered"] == 20

    class WrongShape:  # an API for 32-dim inputs cannot stand in for the digits victim
        d, num_classes = 32, 10

    with pytest.raises(ValueError, match="api="):
        gym.make("deploy_envs/ModelExtraction-v0", api=WrongShape(), holdout=10)


def test_missing_or_wrong_key_is_401(x):
    app = create_app(ModelAPI("linear"), KEYS)
    c = TestClient(app)
    body = {"inputs": x[:2].tolist()}
    for headers in ({}, {"X-API-Key": "nope"}, {"X-API-Key": ""}, {"Authorization": "Basic abc"}):
        for r in (c.post("/v1/query", json=body, headers=headers), c.get("/v1/info", headers=headers)):
            assert r.status_code == 401 and "API key" in r.json()["error"]
    assert c.post("/v1/query", json=body, headers={"Authorization": "Bearer key-bob-0123456789"}).status_code == 200
    with pytest.raises(RemoteAPIError, match="401") as e:
        _remote(app, key="wrong")
    assert e.value.status == 401
    assert app.state.api.total_queries == 2  # the refused requests reached no model


def test_over_budget_rate_or_flagged_is_a_clear_refusal(x):
    app = create_app(ModelAPI("linear", budget=10), KEYS)
    c, remote, local = TestClient(app), _remote(app), ModelAPI("linear", budget=10)
    for n in (6, 6):
        a, b = local.query(x[:n], "alice"), remote.query(x[:n])
        assert (b.ok.tolist(), b.errors, b.budget_left) == (a.ok.tolist(), a.errors, a.budget_left)
    r = c.post("/v1/query", json={"inputs": x[:3].tolist()}, headers=ALICE)
    assert r.status_code == 402 and "budget" in r.json()["error"] and r.json()["budget_left"] == 0
    assert c.get("/v1/info", headers=ALICE).json()["budget_left"] == 0
    assert c.get("/v1/info", headers={"X-API-Key": "key-bob-0123456789"}).json()["budget_left"] == 10  # per key

    now = [0.0]
    rc = TestClient(create_app(ModelAPI("linear", rate_limit=3, clock=lambda: now[0]), KEYS))
    assert rc.post("/v1/query", json={"inputs": x[:3].tolist()}, headers=ALICE).status_code == 200
    r = rc.post("/v1/query", json={"inputs": x[:3].tolist()}, headers=ALICE)
    assert r.status_code == 429 and "rate" in r.json()["error"] and r.headers["Retry-After"] == "1"

    rng = np.random.default_rng(0)
    pts = list(x[:20].astype(np.float64))
    for _ in range(3):  # Jacobian-augmentation-like stream, as in test_model_api
        pts += [np.clip(p + 0.1 * np.sign(rng.normal(size=p.shape)), 0, 1) for p in list(pts)]
    pc = TestClient(create_app(ModelAPI("standard", defense="prada"), KEYS))
    codes = [pc.post("/v1/query", json={"inputs": np.asarray(pts[k : k + 20]).tolist()}, headers=ALICE) for k in range(0, len(pts), 20)]
    assert codes[-1].status_code == 403 and "PRADA" in codes[-1].json()["error"] and codes[-1].json()["flagged"]
    assert codes[0].status_code == 200


def test_bad_bodies_get_clear_errors_not_500(x):
    app = create_app(ModelAPI("standard"), KEYS, max_batch=50)
    c = TestClient(app, raise_server_exceptions=True)
    post = lambda content: c.post("/v1/query", content=content, headers={**ALICE, "Content-Type": "application/json"})
    cases = {
        b"{not json": (400, "not valid JSON"),
        b"[1, 2, 3]": (400, "inputs"),
        b'{"rows": []}': (400, "inputs"),
        b"[" * 50_000 + b"]" * 50_000: (400, "JSON"),
        json.dumps({"inputs": np.zeros((2, 63)).tolist()}).encode(): (422, "shape"),
        json.dumps({"inputs": "not a query"}).encode(): (422, "not an array"),
        json.dumps({"inputs": [[1, 2], [3]]}).encode(): (422, ""),
        b'{"inputs": [[NaN' + b", 0.5" * 63 + b"]]}": (422, "NaN"),
        json.dumps({"inputs": (x[:2] + 2).tolist()}).encode(): (422, "[0, 1]"),
        json.dumps({"inputs": x[:51].tolist()}).encode(): (413, "max_batch"),
        b"0" * 300_000: (413, "max_body_bytes"),
    }
    for content, (status, words) in cases.items():
        r = post(content)
        assert r.status_code == status and words in r.json()["error"], (content[:40], r.status_code, r.text[:200])
    mixed = x[:3].astype(np.float64).tolist()
    mixed[1][5] = float("nan")
    r = c.post("/v1/query", content=json.dumps({"inputs": mixed}), headers=ALICE)
    assert r.status_code == 200 and r.json()["ok"] == [True, False, True] and "NaN" in r.json()["errors"][1]
    b = _remote(app).query(np.asarray(mixed))  # NaN travels through the client too
    assert b.ok.tolist() == [True, False, True] and "NaN" in b.errors[1]
    assert _remote(app).query(object()).error.startswith("query is not an array")
    assert c.post("/v1/query", json={"inputs": x[:2].tolist()}, headers=ALICE).status_code == 200  # still serving


def _walk(obj):
    yield obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def test_info_shows_public_facts_only():
    app = create_app(ModelAPI("standard", output="top_k", top_k=2, budget=100, defense="prada"), KEYS)
    info = TestClient(app).get("/v1/info", headers=ALICE).json()
    assert info["input_shape"] == [1, 8, 8] and info["num_classes"] == 10 and info["output"] == "top_k" and info["top_k"] == 2
    assert info["budget_left"] == 100 and info["client"] == "alice"
    text = json.dumps(info).lower()
    for word in ("weight", "state_dict", "bias", "grad", "logit", "holdout", "x_test", "prada", "defense", "victim"):
        assert word not in text, word
    assert all(len(v) <= 10 for v in _walk(info) if isinstance(v, list))
    assert sum(1 for v in _walk(info) if isinstance(v, (int, float))) < 40
    paths = {r.path for r in app.routes}
    assert "/openapi.json" not in paths and "/docs" not in paths


def test_a_bounded_flood_leaves_the_server_answering(live, x):
    url, _ = live
    body = json.dumps({"inputs": x[:8].tolist()})
    statuses = []
    with httpx.Client(timeout=20, limits=httpx.Limits(max_connections=64)) as http:
        def hit(i):
            headers = ALICE if i % 4 else {"X-API-Key": "wrong"}
            r = http.post(url + "/v1/query", content=body, headers={**headers, "Content-Type": "application/json"})
            statuses.append(r.status_code)

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=48) as pool:
            done, pending = wait([pool.submit(hit, i) for i in range(200)], timeout=60)
        assert not pending and time.monotonic() - t0 < 60
        for f in done:
            exc = f.exception()
            assert exc is None or isinstance(exc, httpx.TransportError), exc
    assert len(statuses) >= 150 and set(statuses) <= {200, 401, 503} and statuses.count(200) >= 10
    assert 500 not in statuses
    with RemoteModelAPI(url, "key-alice-0123456789") as remote:  # still answering, correctly
        np.testing.assert_array_equal(remote.query(x[:20]).outputs, ModelAPI("standard").query(x[:20]).outputs)


def test_requests_over_the_concurrency_limit_are_shed_at_once():
    release = asyncio.Event()
    calls = []

    async def slow_app(scope, receive, send):
        calls.append(scope["path"])
        await release.wait()

    limiter = ConcurrencyLimit(slow_app, limit=1)
    sent = []

    async def send(msg):
        sent.append(msg)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main():
        scope = {"type": "http", "method": "POST", "path": "/v1/query", "headers": []}
        first = asyncio.create_task(limiter(scope, receive, send))
        await asyncio.sleep(0)
        assert limiter.in_flight == 1
        await asyncio.wait_for(limiter({**scope, "path": "/second"}, receive, send), 1.0)  # answered without waiting
        release.set()
        await first

    asyncio.run(main())
    assert calls == ["/v1/query"] and sent[0]["status"] == 503 and b"busy" in sent[1]["body"]
    assert limiter.in_flight == 0 and limiter.shed == 1


def test_only_loopback_hosts_are_served():
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert check_host(host) == host
    for host in ("0.0.0.0", "192.168.1.10", "example.org", "::"):
        with pytest.raises(ValueError, match="loopback"):
            check_host(host)
        with pytest.raises(ValueError, match="loopback"):
            serve(host=host, port=0, victim="linear")
    app = create_app(ModelAPI("linear"), KEYS)
    with pytest.raises(ValueError, match="loopback"), serve_in_thread(app, "0.0.0.0"):
        pass
    for bad in ({}, {"": "a"}, {"k": 3}):
        with pytest.raises(ValueError, match="api_keys"):
            create_app(ModelAPI("linear"), bad)
    with pytest.raises(ValueError, match="max_batch"):
        create_app(ModelAPI("linear"), KEYS, max_batch=0)


def test_serve_command_refuses_remote_hosts_and_bad_key_files(tmp_path):
    cli = typer.Typer()
    cli.command("serve")(serve_cmd)
    cli.command("other")(lambda: None)
    runner = CliRunner()
    r = runner.invoke(cli, ["serve", "--host", "0.0.0.0", "--victim", "linear"])
    assert r.exit_code == 2 and "loopback" in r.output
    bad = tmp_path / "keys.json"
    bad.write_text("[1, 2]")
    r = runner.invoke(cli, ["serve", "--keys-file", str(bad), "--victim", "linear"])
    assert r.exit_code != 0 and "keys-file" in r.output


def test_every_503_under_a_burst_is_the_apps_json(x):
    """64 threads at once against max_concurrency=4: each 503 is the app's JSON body, none uvicorn's plain text."""
    app = create_app(ModelAPI("standard"), KEYS, max_concurrency=4)
    body = json.dumps({"inputs": x[:64].tolist()})
    answers = []
    with serve_in_thread(app, "127.0.0.1", 0, log_level="error") as url:
        def hit(i):
            with httpx.Client(timeout=30) as http:  # one connection per thread: 64 sockets at once
                r = http.post(url + "/v1/query", content=body, headers={**ALICE, "Content-Type": "application/json"})
                answers.append((r.status_code, r.headers.get("content-type", ""), r.text))

        with ThreadPoolExecutor(max_workers=64) as pool:
            done, pending = wait([pool.submit(hit, i) for i in range(256)], timeout=120)
        assert not pending
        for f in done:
            exc = f.exception()
            assert exc is None or isinstance(exc, httpx.TransportError), exc
    shed = [(ctype, text) for status, ctype, text in answers if status == 503]
    assert len(answers) >= 200 and {s for s, _, _ in answers} <= {200, 503}
    assert shed, "the burst never went over the limit; the test did not test anything"
    for ctype, text in shed:
        assert ctype.startswith("application/json"), f"a 503 that is not JSON: {ctype} {text[:60]!r}"
        assert "error" in json.loads(text)

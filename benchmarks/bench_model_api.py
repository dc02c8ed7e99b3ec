"""Throughput benchmark of the model API and of ``deploy_envs/ModelExtraction-v0``.

Run from the repository root::

    python benchmarks/bench_model_api.py            # full run (about a minute on 2 CPU cores)
    python benchmarks/bench_model_api.py --quick    # smoke run

Ratios, each measured within this one run, written with the raw timings to
``benchmarks/results/model_api.json``:

1. **API / bare pass**: queries per second of ``ModelAPI.query`` (probabilities, no
   defense, one client: validation, accounting, log, softmax and the answer) over
   those of a bare batched forward pass of the same victim on the same batch.
   Target: >= 0.8 at 256 queries per call; also reported at 64 and 1024.
2. **native vs sync**: steps per second of ``gymnasium.make_vec(id, num_envs=64)``
   over a ``SyncVectorEnv`` of 64 ``gymnasium.make(id)`` copies, default arguments
   (digits CNN victim, MLP surrogate, 10 queries per step), random valid queries.
   Each timed block is one whole episode (20 steps) on both sides, so both sides pay
   the same mix of cheap early fits and dear late ones. Target: >= 10.
   **Its ceiling here**: the episode's matrix products and victim passes alone, run bare
   (:func:`bench_native_floor`), against the native episode; the native-vs-sync ratio the
   env could reach if all its own code were free is reported as ``ceiling_vs_sync``.
3. **HTTP vs in-process** (reported, no target): queries per second of
   :class:`~deploy_envs.api.client.RemoteModelAPI` against the same API served by
   uvicorn on a free loopback port in a background thread (JSON both ways, one
   keep-alive connection), next to ``ModelAPI.query`` in process, at 256 and 1024
   queries per call. Needs the ``serve`` extra (fastapi, uvicorn, httpx); skipped
   with a note otherwise.

Timing: ``time.perf_counter``, warm-up first, the two sides of a ratio in
alternating blocks, the median of the per-repetition ratios reported (as in
``bench_evasion.py``).
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, bench_parser, native_vs_sync, paired, write_results
from deploy_envs.api import ModelAPI

ENV_ID = "deploy_envs/ModelExtraction-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "model_api.json"
TARGETS = {"api_vs_bare": 0.8, "native_vs_sync": 10.0}


def bench_api(n: int, quick: bool, seed: int) -> dict[str, Any]:
    api = ModelAPI("standard")
    x = np.random.default_rng(seed).random((n, api.d), dtype=np.float32)
    xt = torch.from_numpy(x).view(n, *api.input_shape)

    def bare() -> None:
        with torch.no_grad():
            api.model(xt)

    def through_api() -> None:
        api.query(x, "bench")

    inner = max(2, int((10 if quick else 40) * 256 / n))
    # a = bare, b = api: ratio = t(bare) / t(api) = API queries/s over bare queries/s
    res = paired(bare, through_api, inner_a=inner, inner_b=inner, reps=5 if quick else 15, warmup=3)
    return {"queries_per_call": n, "api_qps": n / res["b_s"], "bare_qps": n / res["a_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]], "target": TARGETS["api_vs_bare"] if n == 256 else None,
            "met": (res["ratio"] >= TARGETS["api_vs_bare"]) if n == 256 else None}


def bench_http(n: int, quick: bool, seed: int) -> dict[str, Any]:
    from deploy_envs.api.client import RemoteModelAPI
    from deploy_envs.api.server import create_app, new_keys, serve_in_thread

    keys = new_keys(["bench"])
    api = ModelAPI("standard")
    x = np.random.default_rng(seed).random((n, api.d), dtype=np.float32)
    with serve_in_thread(create_app(api, keys, max_batch=max(n, 1024)), "127.0.0.1", 0, log_level="error") as url:
        with RemoteModelAPI(url, next(iter(keys))) as remote:
            local = ModelAPI("standard")
            if not np.array_equal(remote.query(x).outputs, local.query(x).outputs):
                raise AssertionError("HTTP answers differ from in-process answers")
            inner = max(2, int((4 if quick else 16) * 256 / n))
            res = paired(lambda: local.query(x, "bench"), lambda: remote.query(x), inner_a=inner * 4, inner_b=inner,
                         reps=3 if quick else 7, warmup=2)
    return {"queries_per_call": n, "in_process_qps": n / res["a_s"], "http_qps": n / res["b_s"],
            "http_over_in_process": res["ratio"], "ratio_range": [res["ratio_min"], res["ratio_max"]]}


def bench_native_vs_sync(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    # a block is one whole episode (max_queries 200 / batch_size 10 = 20 steps): the fit's cost grows with the
    # queries kept, so blocks of a few steps would compare different phases of the episode on the two sides
    steps = 20
    return native_vs_sync(ENV_ID, num_envs, seed=seed, inner_sync=steps, inner_native=steps,
                          reps=2 if quick else 5, warmup=1, target=TARGETS["native_vs_sync"])


def bench_native_floor(num_envs: int, quick: bool, seed: int, native_vs_sync_ratio: float) -> dict[str, Any]:
    """The least time the native episode's arithmetic takes on this machine, and the ratio it allows.

    Runs, bare, only the episode's matrix products in the shapes the env uses (per step, ``fit_steps``
    fits of the MLP surrogates on all queries so far: two forward and three backward products; then
    the held-out evaluation's two products) and the victim's forward pass on each step's queries. No
    implementation of the env that does this arithmetic in float32 can run faster than that here, so
    ``ceiling_vs_sync`` (the measured native-vs-sync ratio times native time over floor time) bounds
    the ratio any speed-up of the env's own code could reach.
    """
    env = gym.make_vec(ENV_ID, num_envs=num_envs)
    core = env.unwrapped.core
    if core.surrogate_kind != "mlp":
        raise ValueError("the floor is written for the default MLP surrogate")
    B, d, K, h = num_envs, core.d, core.K, core.hidden
    m, steps, fits = core.batch_size, core.max_queries // core.batch_size, core.fit_steps
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(B, d, h, generator=gen), torch.randn(B, h, K, generator=gen)
    queries = [torch.rand(B, d, m * s, generator=gen) for s in range(1, steps + 1)]  # queries last, as in the fit
    x_hold = core._x_hold.unsqueeze(0).expand(B, *core._x_hold.shape)
    model = core.api.model
    x_victim = torch.rand(B * m, *core.api.input_shape, generator=gen)

    def floor() -> None:
        with torch.no_grad():
            for xt in queries:
                model(x_victim)
                for _ in range(fits):
                    ht = torch.bmm(w1.transpose(1, 2), xt)  # hidden (B, h, n)
                    zt = torch.bmm(w2.transpose(1, 2), ht)  # logits (B, K, n)
                    torch.bmm(xt, ht.transpose(1, 2))  # the first layer's weight gradient (B, d, h)
                    torch.bmm(ht, zt.transpose(1, 2))  # the second layer's (B, h, K)
                    torch.bmm(w2, zt)  # back through the second layer (B, h, n)
                torch.bmm(torch.bmm(x_hold, w1), w2)  # held-out evaluation

    native = Stepper(env, seed)

    def episode() -> None:
        for _ in range(steps):
            native()

    res = paired(episode, floor, inner_a=1, inner_b=1, reps=3 if quick else 7, warmup=1)
    env.close()
    return {"num_envs": num_envs, "native_episode_s": res["a_s"], "floor_episode_s": res["b_s"], "native_over_floor": res["ratio"],
            "native_over_floor_range": [res["ratio_min"], res["ratio_max"]], "ceiling_vs_sync": native_vs_sync_ratio * res["ratio"]}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "targets": TARGETS}
    results["api_vs_bare"] = [bench_api(n, args.quick, args.seed) for n in (64, 256, 1024)]
    results["native_vs_sync"] = [bench_native_vs_sync(64, args.quick, args.seed)]
    results["native_floor"] = [bench_native_floor(64, args.quick, args.seed, results["native_vs_sync"][0]["ratio"])]
    try:
        results["http_vs_in_process"] = [bench_http(n, args.quick, args.seed) for n in (256, 1024)]
    except ImportError as e:
        results["http_vs_in_process"] = f"skipped: {e} (pip install 'deploy-envs[serve]')"
    results["seconds"] = time.perf_counter() - t0
    for r in results["api_vs_bare"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"API / bare pass, {r['queries_per_call']:5d} queries/call: {r['ratio']:.2f}x (target >= 0.8 at 256: {met}); "
              f"{r['api_qps']:,.0f} vs {r['bare_qps']:,.0f} queries/s")
    for r in results["native_vs_sync"]:
        print(f"native vs sync, {r['num_envs']} copies: {r['ratio']:.1f}x (target >= {TARGETS['native_vs_sync']:g}: {'yes' if r['met'] else 'NO'}); "
              f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s")
    for r in results["native_floor"]:
        print(f"native episode over its arithmetic alone, {r['num_envs']} copies: {r['native_over_floor']:.2f}x; native vs sync "
              f"with the env's own code free: at most {r['ceiling_vs_sync']:.1f}x")
    if isinstance(results["http_vs_in_process"], str):
        print(f"HTTP path {results['http_vs_in_process']}")
    else:
        for r in results["http_vs_in_process"]:
            print(f"HTTP (loopback) vs in-process, {r['queries_per_call']:5d} queries/call: {r['http_qps']:,.0f} vs "
                  f"{r['in_process_qps']:,.0f} queries/s ({r['http_over_in_process']:.2f}x)")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput and retraining benchmark of ``deploy_envs/Poisoning-v0``.

Run from the repository root::

    python benchmarks/bench_poisoning.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_poisoning.py --quick    # smoke run

It prints ratios, each measured within this one run, and writes them with the raw
timings to ``benchmarks/results/poisoning.json``:

1. **native vs sync**: steps per second of ``gymnasium.make_vec(id, num_envs=32)``
   (all copies' victims retrained in one set of tensor ops) over those of a
   ``gymnasium.vector.SyncVectorEnv`` of 32 ``gymnasium.make(id)`` copies, same
   kwargs, random valid actions, for each victim. Target: >= 10.
2. **warm vs scratch**: after one poison point is added to the training set, the
   time of a warm-started retrain (``train_steps`` projected Nesterov steps from the
   previous optimum, as the env does) over the time the same optimiser needs from
   zero to reach the same objective value, on 32 victims at once. Target: >= 5.

Why the first ratio stays far below 10 on a CPU: the retrain is already batched as
the issue asks (all copies' parameters stacked ``(B, d+1, K)``, the clean-data scores
of every copy in one GEMM against the shared clean set, the poison rows of each copy in
one ``bmm``, warm-started). A single env's retrain step costs about 80 us of
arithmetic (two ``(K, d+1) x (d+1, N)`` products on 1437 digits) plus about 100 us of
torch call overhead; batching removes the overhead but not the ``4 N (d+1) K`` flops
per copy and step, so the ratio is bounded by about (80 + 100) / 80 plus what the
larger GEMM gains in efficiency: 1.6x to 3x measured. Reaching 10x needs less
arithmetic per copy (an approximate, e.g. influence-function, retrain) or a GPU.

Timing: ``time.perf_counter``, warm-up first, the two sides in alternating blocks,
the median of the per-repetition ratios reported (as ``bench_evasion.py``). Torch runs
on one thread by default (``--threads``), so the batch's advantage comes from batching
alone, not from using more cores than the single copies can.
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
from deploy_envs.benchmarking import (
    add_device_option,
    add_threads_option,
    apply_threads,
    bench_parser,
    device_kwargs,
    native_vs_sync,
    paired,
    parse_device,
    synchronize,
    write_results,
)

ENV_ID = "deploy_envs/Poisoning-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "poisoning.json"
TARGETS = {"native_vs_sync": 10.0, "warm_vs_scratch": 5.0}


def bench_native_vs_sync(victim: str, num_envs: int, quick: bool, seed: int, device: str = "cpu") -> dict[str, Any]:
    res = native_vs_sync(ENV_ID, num_envs, {"victim": victim, **device_kwargs(device)}, seed=seed, inner_sync=2 if quick else 4,
                         inner_native=10 if quick else 30, reps=3 if quick else 7, warmup=2, target=TARGETS["native_vs_sync"])
    return {"victim": victim, **res}


def bench_warm_vs_scratch(victim: str, num_envs: int, quick: bool, seed: int, device: str = "cpu") -> dict[str, Any]:
    env = gym.make_vec(ENV_ID, num_envs=num_envs, victim=victim, **device_kwargs(device))
    core = env.unwrapped.core
    v = core.victims
    rng = np.random.default_rng(seed)
    # the state after some poisoning: 10 random label flips, trained to convergence
    P = 11
    idx = rng.integers(len(core.y_train), size=(num_envs, P))
    xe = core.x_train[idx]
    ye = (core.y_train[idx] + 1 + rng.integers(core.K - 1, size=(num_envs, P))) % core.K
    we = np.ones((num_envs, P), np.float32)
    we[:, -1] = 0.0
    theta0 = torch.zeros(num_envs, v.D, v.K, device=core.device)
    prev = v.train(core.theta_clean.unsqueeze(0).repeat(num_envs, 1, 1), xe, ye, we, 2000)
    we[:, -1] = 1.0  # one more point arrives
    steps = core.train_steps
    warm = v.train(prev, xe, ye, we, steps)
    target = v.objective(warm, xe, ye, we)  # per-copy objective the warm start reaches
    # steps the optimiser needs from zero to reach it in every copy (restarts keep the same path)
    theta, k, chunk = theta0, 0, 25
    while True:
        theta = v.train(theta0, xe, ye, we, k + chunk)
        k += chunk
        if bool((v.objective(theta, xe, ye, we) <= target + 1e-7).all()) or k >= 20000:
            break
    lo = max(chunk, k - chunk)
    while lo < k:  # binary search for the first step count that reaches the target
        mid = (lo + k) // 2
        if bool((v.objective(v.train(theta0, xe, ye, we, mid), xe, ye, we) <= target + 1e-7).all()):
            k = mid
        else:
            lo = mid + 1
    scratch_steps = k
    def scratch():
        v.train(theta0, xe, ye, we, scratch_steps)
        synchronize(core.device)

    def warm_start():
        v.train(prev, xe, ye, we, steps)
        synchronize(core.device)

    res = paired(scratch, warm_start,
                 inner_a=1, inner_b=max(1, scratch_steps // steps // 4), reps=3 if quick else 7, warmup=1)
    env.close()
    return {"victim": victim, "num_envs": num_envs, "warm_steps": steps, "scratch_steps": scratch_steps,
            "warm_s": res["b_s"], "scratch_s": res["a_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]], "objective": float(target.mean()),
            "target": TARGETS["warm_vs_scratch"], "met": res["ratio"] >= TARGETS["warm_vs_scratch"]}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def report(results: dict[str, Any]) -> None:
    rows = []
    for r in results["native_vs_sync"]:
        rows.append((f"native vs sync, {r['victim']}, {r['num_envs']} copies", f"{r['ratio']:.1f}x", f">= {r['target']:g}x",
                     "yes" if r["met"] else "NO", f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s"))
    for r in results["warm_vs_scratch"]:
        rows.append((f"warm vs scratch retrain, {r['victim']}, {r['num_envs']} victims", f"{r['ratio']:.1f}x", f">= {r['target']:g}x",
                     "yes" if r["met"] else "NO", f"{r['warm_steps']} vs {r['scratch_steps']} steps to objective {r['objective']:.4f}"))
    header = ("measure", "ratio", "target", "met", "detail")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(parser, default=1, help="torch threads (default 1: the batch gains nothing from extra cores)")
    add_device_option(parser)
    args = parser.parse_args(argv)
    device = parse_device(parser, args)
    apply_threads(args.threads)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "targets": TARGETS}
    t0 = time.perf_counter()
    victims = ("logistic",) if args.quick else ("logistic", "svm")
    results["device"] = str(device)
    results["native_vs_sync"] = [bench_native_vs_sync(v, 32, args.quick, args.seed, device) for v in victims]
    results["warm_vs_scratch"] = [bench_warm_vs_scratch(v, 32, args.quick, args.seed, device) for v in victims]
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - t0
    report(results)
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

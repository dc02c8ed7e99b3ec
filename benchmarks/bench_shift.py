"""Throughput benchmark of ``deploy_envs/DistributionShift-v0``.

Run from the repository root::

    python benchmarks/bench_shift.py            # full run (about a minute on 2 CPU cores)
    python benchmarks/bench_shift.py --quick    # smoke run

Measures, within this one run, the steps per second of ``gymnasium.make_vec(id,
num_envs=64)`` (the native batch: one lookup/forward pass for all copies' batches of
32 inputs) over those of a ``gymnasium.vector.SyncVectorEnv`` of 64 ``gymnasium.make(id)``
copies with the same default kwargs (random corruption kind and severity, change
point in (10, 40) of 50 steps, so about half the copies are shifted at any time) and
random valid actions. Target: >= 8. Also reported for Gaussian noise only (the one
corruption that needs a live forward pass every step; the others are looked up).

Timing: warm-up, then repetitions in which the two sides run in alternating blocks,
the ratio of each repetition from its two adjacent blocks, and the median reported.
``--threads N`` sets torch's intra-op threads for both sides (default: torch's choice);
``--threads 1`` is the fair setting on a machine whose other cores are busy, where a
multi-threaded torch pass stalls on the cores it has to share.
Writes ``benchmarks/results/shift.json``.
"""
from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, add_threads_option, apply_threads, bench_parser, machine_info, paired, write_results

ENV_ID = "deploy_envs/DistributionShift-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "shift.json"
TARGET = 8.0


def bench(label: str, kwargs: dict[str, Any], num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    native = gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
    sync = gym.vector.SyncVectorEnv([partial(gym.make, ENV_ID, **kwargs) for _ in range(num_envs)])
    n_step, s_step = Stepper(native, seed, stagger=50), Stepper(sync, seed, stagger=50)
    res = paired(s_step, n_step, inner_a=3 if quick else 10, inner_b=20 if quick else 80, reps=3 if quick else 7, warmup=3)
    native.close()
    sync.close()
    return {"setting": label, "kwargs": kwargs, "num_envs": num_envs,
            "native_steps_per_s": num_envs / res["b_s"], "sync_steps_per_s": num_envs / res["a_s"],
            "ratio": res["ratio"], "ratio_range": [res["ratio_min"], res["ratio_max"]],
            "target": TARGET, "met": res["ratio"] >= TARGET}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "quick": args.quick,
    }
    settings = [("default (random kind and severity)", {}), ("gaussian_noise only", {"corruption": "gaussian_noise"})]
    results["native_vs_sync"] = [bench(label, kw, 64, args.quick, args.seed) for label, kw in settings]
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - t0
    for r in results["native_vs_sync"]:
        print(f"native vs sync, 64 copies, {r['setting']}: {r['ratio']:.1f}x (range {r['ratio_range'][0]:.1f}-{r['ratio_range'][1]:.1f}; "
              f"target >= {TARGET:g}x: {'met' if r['met'] else 'NOT met'}); "
              f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

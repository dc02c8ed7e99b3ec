"""Throughput benchmark of ``deploy_envs/FairLending-v0``: native batch vs SyncVectorEnv.

Run from the repository root::

    python benchmarks/bench_fairness.py           # full run (under a minute on 2 CPU cores)
    python benchmarks/bench_fairness.py --quick   # smoke run

Steps per second of ``gymnasium.make_vec(id, num_envs=256)`` (the native batch: every
copy's population updated in one array pass) over those of a
``gymnasium.vector.SyncVectorEnv`` of 256 ``gymnasium.make(id)`` copies, default kwargs
(population 1000, 100 applicants a step, thresholds mode), random valid actions drawn
beforehand. Target: >= 25. The two sides run in alternating blocks; the median of the
per-repetition ratios is reported and written with the raw timings to
``benchmarks/results/fairness.json``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from functools import partial
from pathlib import Path

import gymnasium as gym

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, bench_parser, block

ENV_ID = "deploy_envs/FairLending-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "fairness.json"
TARGET = 25.0


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, RESULTS)
    p.add_argument("--num-envs", type=int, default=256)
    a = p.parse_args(argv)
    n = a.num_envs
    native = gym.make_vec(ENV_ID, num_envs=n)
    sync = gym.vector.SyncVectorEnv([partial(gym.make, ENV_ID) for _ in range(n)])
    ns, ss = Stepper(native, a.seed), Stepper(sync, a.seed)
    for _ in range(3):
        ns()
        ss()
    reps = 3 if a.quick else 9
    tn, ts, ratios = [], [], []
    for r in range(reps):
        if r % 2 == 0:
            x, y = block(ss, 2 if a.quick else 5), block(ns, 20 if a.quick else 50)
        else:
            y, x = block(ns, 20 if a.quick else 50), block(ss, 2 if a.quick else 5)
        ts.append(x)
        tn.append(y)
        ratios.append(x / y)
    res = {
        "num_envs": n,
        "native_steps_per_s": n / statistics.median(tn),
        "sync_steps_per_s": n / statistics.median(ts),
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "target": TARGET,
        "met": statistics.median(ratios) >= TARGET,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(), "gymnasium": gym.__version__,
                    "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "quick": a.quick,
    }
    print(f"FairLending-v0, {n} copies: native {res['native_steps_per_s']:,.0f} vs sync {res['sync_steps_per_s']:,.0f} steps/s "
          f"-> {res['ratio']:.1f}x (range {min(ratios):.1f}-{max(ratios):.1f}; target >= {TARGET:g}x: {'met' if res['met'] else 'NOT met'})")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fresh processes with glibc's default malloc thresholds vs :func:`deploy_envs.allocator.keep_freed_memory`.

Run from the repository root::

    python benchmarks/bench_allocator.py            # full run (about a minute on 2 CPU cores)
    python benchmarks/bench_allocator.py --quick    # smoke run

Each measurement runs in a fresh child process (the allocator's state is the process's
history, and ``mallopt`` cannot be undone), the two settings alternating, three pairs:

* the digits CNN's bare pass (``model(x)`` under ``no_grad``) on 256, 1,024 and 4,096 inputs;
* ``Evasion-v0``'s native step at 1,024 copies (random actions, staggered episodes).

The ratio ``default_vs_kept`` is the median time with the defaults over the median time
with the thresholds fixed (above 1: keeping freed memory is faster). Results go to
``benchmarks/results/allocator.json``. Linux with glibc only (elsewhere the setting does nothing).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy_envs.benchmarking import bench_parser, machine_info, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "allocator.json"

CHILD = r"""
import statistics, sys, time
import numpy as np, torch, gymnasium as gym
import deploy_envs
from deploy_envs.allocator import keep_freed_memory
from deploy_envs.benchmarking import Stepper
kept, what, n, reps = sys.argv[1] == "kept", sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if kept:
    assert keep_freed_memory()
if what == "pass":
    model = gym.make("deploy_envs/Evasion-v0").unwrapped.core.victim.model
    x = torch.rand(n, 1, 8, 8)
    def once():
        with torch.no_grad():
            model(x)
else:
    once = Stepper(gym.make_vec("deploy_envs/Evasion-v0", num_envs=n), 0, stagger=20)
inner = max(5, 20000 // n)
for _ in range(inner):
    once()
times = []
for _ in range(reps):
    t = time.perf_counter()
    for _ in range(inner):
        once()
    times.append((time.perf_counter() - t) / inner)
print(statistics.median(times))
"""


def child(kept: bool, what: str, n: int, reps: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        env.pop(var, None)  # glibc's defaults on the default side
    out = subprocess.run([sys.executable, "-c", CHILD, "kept" if kept else "default", what, str(n), str(reps)],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(what: str, n: int, pairs: int, reps: int) -> dict[str, Any]:
    default, kept = [], []
    for p in range(pairs):
        order = (False, True) if p % 2 == 0 else (True, False)
        for k in order:
            (kept if k else default).append(child(k, what, n, reps))
    ratios = [d / k for d, k in zip(default, kept)]
    return {
        "setting": "victim pass" if what == "pass" else "env step",
        "num_envs": n,
        "default_us": statistics.median(default) * 1e6,
        "kept_us": statistics.median(kept) * 1e6,
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, RESULTS, seed=False).parse_args(argv)
    pairs, reps = (1, 3) if args.quick else (3, 5)
    t0 = time.perf_counter()
    cases = [("pass", 1024)] if args.quick else [("pass", 256), ("pass", 1024), ("pass", 4096), ("step", 1024)]
    results: dict[str, Any] = {"env": "deploy_envs/Evasion-v0", "machine": machine_info(), "quick": args.quick,
                               "default_vs_kept": [measure(w, n, pairs, reps) for w, n in cases]}
    for r in results["default_vs_kept"]:
        print(f"{r['setting']}, {r['num_envs']:,} copies: defaults {r['default_us']:,.0f} us, kept {r['kept_us']:,.0f} us "
              f"-> {r['ratio']:.2f}x (range {r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f})")
    results["seconds"] = time.perf_counter() - t0
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

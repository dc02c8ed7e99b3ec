"""Throughput benchmark of ``deploy_envs/Bandit-v0`` (and ``ContextualBandit-v0``).

Run from the repository root::

    python benchmarks/bench_bandits.py            # full run (well under a minute on 2 CPU cores)
    python benchmarks/bench_bandits.py --quick    # smoke run

It prints ratios measured within this one run and writes them with the raw timings
to ``benchmarks/results/bandits.json``:

1. **native vs sync**: steps per second of ``gymnasium.make_vec(id, num_envs=1024)``
   (the native batch: one numpy step for all copies) over those of a
   ``gymnasium.vector.SyncVectorEnv`` of 1024 ``gymnasium.make(id)`` copies, same
   kwargs, pre-drawn random valid actions. The sync side is timed on fewer steps (it
   is slow); both include the episode ends and autoresets that fall in their steps.
   Target for ``Bandit-v0``: >= 50. ``ContextualBandit-v0`` is reported too (no target).
2. **a full experiment**: one episode of 10^4 pulls on 1024 copies with Thompson
   sampling acting (the agent's time included), in pulls per second (informative).

Timing: ``time.perf_counter``, warm-up first, then repetitions in which the two
sides of a ratio run in alternating blocks (so a burst of load from other processes
hits both); the median of the per-repetition ratios is reported.
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

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.core.agents import make_baseline
from deploy_envs.benchmarking import bench_parser, native_vs_sync, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "bandits.json"
TARGET = 50.0


def bench_native_vs_sync(env_id: str, num_envs: int, kwargs: dict, quick: bool, seed: int) -> dict[str, Any]:
    res = native_vs_sync(env_id, num_envs, kwargs, seed=seed, inner_sync=1 if quick else 3, inner_native=50 if quick else 300, reps=3 if quick else 7)
    return {**res, "target": TARGET if env_id.endswith("/Bandit-v0") else None}


def bench_experiment(num_envs: int, horizon: int, seed: int) -> dict[str, Any]:
    env = gym.make_vec("deploy_envs/Bandit-v0", num_envs=num_envs, horizon=horizon)
    agent = make_baseline("thompson", seed=seed)
    agent.setup(env)
    obs, _ = env.reset(seed=seed)
    start = np.ones(num_envs, dtype=bool)
    t0 = time.perf_counter()
    for _ in range(horizon):
        obs, _, _, _, info = env.step(agent.act(obs, start))
        start[:] = False
    seconds = time.perf_counter() - t0
    env.close()
    return {
        "agent": "thompson",
        "num_envs": num_envs,
        "horizon": horizon,
        "seconds": seconds,
        "pulls_per_s": num_envs * horizon / seconds,
        "mean_final_pseudo_regret": float(np.mean(info["pseudo_regret"])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS, quick_help="fewer repetitions and a shorter experiment")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "gymnasium": gym.__version__,
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "quick": args.quick,
    }
    results["native_vs_sync"] = [
        bench_native_vs_sync("deploy_envs/Bandit-v0", 1024, {}, args.quick, args.seed),
        bench_native_vs_sync("deploy_envs/Bandit-v0", 1024, {"distribution": "gaussian", "drift": 0.01}, args.quick, args.seed),
        bench_native_vs_sync("deploy_envs/ContextualBandit-v0", 1024, {}, args.quick, args.seed),
    ]
    results["experiment"] = bench_experiment(1024, 1000 if args.quick else 10_000, args.seed)
    results["seconds"] = time.perf_counter() - t0

    print(f"{'measure':58s} {'ratio':>8s} {'target':>8s}  detail")
    for r in results["native_vs_sync"]:
        target = f">= {r['target']:g}" if r["target"] else "-"
        met = "" if not r["target"] else (" (met)" if r["ratio"] >= r["target"] else " (NOT MET)")
        extra = ", ".join(f"{k}={v}" for k, v in r["kwargs"].items())
        label = f"native vs sync, {r['env'].split('/')[-1]}{' (' + extra + ')' if extra else ''}, {r['num_envs']} copies"
        print(f"{label:58s} {r['ratio']:7.0f}x {target:>8s}  {r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s{met}")
    e = results["experiment"]
    print(f"{e['agent']} on {e['num_envs']} copies x {e['horizon']} pulls: {e['seconds']:.1f} s, {e['pulls_per_s']:,.0f} pulls/s (agent included), mean regret {e['mean_final_pseudo_regret']:.1f}")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

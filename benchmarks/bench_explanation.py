"""Throughput benchmark of ``deploy_envs/Explanation-v0``.

Run from the repository root::

    python benchmarks/bench_explanation.py            # full run (about a minute on 2 idle CPU cores)
    python benchmarks/bench_explanation.py --quick    # smoke run (seconds)

Ratios, each measured within this one run (:mod:`deploy_envs.benchmarking`), written
with the raw timings to ``benchmarks/results/explanation.json``:

1. **native vs sync**: steps per second of ``gymnasium.make_vec(id, num_envs=64)``
   (the native batch: one forward pass of the victim for all copies) over those of a
   ``gymnasium.vector.SyncVectorEnv`` of 64 ``gymnasium.make(id)`` copies, same kwargs,
   random valid actions, episodes staggered by partial resets so autoresets spread over
   the steps. Target: >= 8. Settings: deletion on pixels (default), sufficiency
   (variable episode length), deletion on 2x2 patches with blur replacement.
2. **step / bare pass** (informational): time of one native ``env.step`` at 64 copies
   over the time of the victim's bare forward pass on 64 inputs.

Timing: warm-up, then alternating blocks; the ratio of each repetition from its two
adjacent blocks; the median is reported, with the range in the JSON.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, bench_parser, machine_info, native_vs_sync, paired, write_results

ENV_ID = "deploy_envs/Explanation-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "explanation.json"
TARGET = 8.0
SETTINGS = [
    ("deletion, pixels, zero (default)", {}),
    ("sufficiency, pixels, zero", {"mode": "sufficiency"}),
    ("deletion, 2x2 patches, blur", {"patch_size": 2, "replacement": "blur", "features_per_step": 1}),
]


def step_vs_bare(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    env = gym.make_vec(ENV_ID, num_envs=num_envs)
    model = env.unwrapped.core.victim.model
    x = torch.from_numpy(env.unwrapped.core._flat_images[:num_envs].reshape(num_envs, 1, 8, 8).copy())

    def bare():
        with torch.no_grad():
            model(x)

    stepper = Stepper(env, seed, stagger=16)
    res = paired(stepper, bare, inner_a=20 if quick else 100, inner_b=20 if quick else 100, reps=3 if quick else 7, warmup=3)
    env.close()
    return {"num_envs": num_envs, "step_s": res["a_s"], "bare_forward_s": res["b_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "native_vs_sync": []}
    for label, kw in SETTINGS:
        r = native_vs_sync(ENV_ID, 64, kw, seed=args.seed, inner_sync=2 if args.quick else 3,
                           inner_native=10 if args.quick else 30, reps=3 if args.quick else 5, warmup=2, stagger=16)
        r.update(setting=label, target=TARGET, met=r["ratio"] >= TARGET)
        results["native_vs_sync"].append(r)
        print(f"native vs sync, 64 copies, {label}: {r['ratio']:.1f}x (range {r['ratio_range'][0]:.1f}-{r['ratio_range'][1]:.1f}; "
              f"target >= {TARGET:g}x: {'met' if r['met'] else 'NOT met'}); "
              f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s", flush=True)
    sb = results["step_vs_bare"] = step_vs_bare(64, args.quick, args.seed)
    print(f"step / bare forward pass, 64 copies: {sb['ratio']:.2f} ({sb['step_s'] * 1e6:.0f} us vs {sb['bare_forward_s'] * 1e6:.0f} us)")
    results["machine"]["loadavg_end"] = list(np.round(__import__("os").getloadavg(), 2))
    results["seconds"] = time.perf_counter() - t0
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

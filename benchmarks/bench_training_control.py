"""Throughput benchmark of ``deploy_envs/TrainingControl-v0``.

Run from the repository root::

    python benchmarks/bench_training_control.py            # full run (a few minutes on 2 loaded CPU cores)
    python benchmarks/bench_training_control.py --quick    # smoke run

Measures, within this one run, the steps per second of ``gymnasium.make_vec(id,
num_envs=64)`` (the native batch: the 64 networks' parameters stacked, every SGD step a
few batched matrix products per batch size in use) over those of a
``gymnasium.vector.SyncVectorEnv`` of 64 ``gymnasium.make(id)`` copies (one network
after another), with the default kwargs (one env step = 25 SGD steps plus an evaluation
on the train, validation and test splits) and random valid actions (learning rates
log-uniform in [1e-3, 1], batch sizes 8-128). Target: >= 10. Also reported with the
batch size fixed at 32 (one stack for all copies). Torch runs single-threaded on both
sides (``torch.set_num_threads(1)``), so the ratio measures batching, not thread count.

Timing: warm-up, then repetitions in which the two sides run in alternating blocks,
the ratio of each repetition from its two adjacent blocks, and the median reported
(see :mod:`deploy_envs.benchmarking`). Writes ``benchmarks/results/training_control.json``.
"""
from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import (
    Stepper,
    add_device_option,
    bench_parser,
    device_kwargs,
    machine_info,
    paired,
    parse_device,
    write_results,
)

ENV_ID = "deploy_envs/TrainingControl-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "training_control.json"
TARGET = 10.0


class FixedBatchStepper(Stepper):
    """Random learning rates and weight decays, batch-size action fixed at 0 (batch 32 by default)."""

    def __init__(self, env, seed: int) -> None:
        super().__init__(env, seed)
        for a in self.actions:
            a[:, 1] = 0.0


def bench(label: str, num_envs: int, quick: bool, seed: int, stepper=Stepper, kwargs: dict | None = None) -> dict[str, Any]:
    kwargs = kwargs or {}
    native = gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
    sync = gym.vector.SyncVectorEnv([partial(gym.make, ENV_ID, **kwargs) for _ in range(num_envs)])
    n_step, s_step = stepper(native, seed), stepper(sync, seed)
    res = paired(s_step, n_step, inner_a=1 if quick else 2, inner_b=3 if quick else 10, reps=3 if quick else 7, warmup=1)
    native.close()
    sync.close()
    return {"setting": label, "num_envs": num_envs,
            "native_steps_per_s": num_envs / res["b_s"], "sync_steps_per_s": num_envs / res["a_s"],
            "ratio": res["ratio"], "ratio_range": [res["ratio_min"], res["ratio_max"]],
            "target": TARGET, "met": res["ratio"] >= TARGET}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_device_option(parser)
    args = parser.parse_args(argv)
    device = parse_device(parser, args)
    kw = device_kwargs(device)
    torch.set_num_threads(1)
    np.random.seed(args.seed)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "device": str(device)}
    results["native_vs_sync"] = [
        bench("default (random lr, batch size, weight decay)", 64, args.quick, args.seed, kwargs=kw),
        bench("batch size fixed at 32", 64, args.quick, args.seed, FixedBatchStepper, kwargs=kw),
    ]
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - t0
    for r in results["native_vs_sync"]:
        print(f"native vs sync, {r['num_envs']} copies, {r['setting']}: {r['ratio']:.1f}x (range {r['ratio_range'][0]:.1f}-{r['ratio_range'][1]:.1f}; "
              f"target >= {TARGET:g}x: {'met' if r['met'] else 'NOT met'}); "
              f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

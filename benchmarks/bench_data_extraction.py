"""Throughput benchmark of ``deploy_envs/DataExtraction-v0``.

Run from the repository root::

    python benchmarks/bench_data_extraction.py            # full run (about a minute on 2 CPU cores)
    python benchmarks/bench_data_extraction.py --quick    # smoke run

Ratios, each measured within this one run, written with the raw timings to
``benchmarks/results/data_extraction.json``:

1. **native vs sync** (target >= 8 at 64 copies): steps per second of
   ``gymnasium.make_vec("deploy_envs/DataExtraction-v0", num_envs=64)`` (every copy's query
   answered in one batched pass of the GRU: one batched GRU step from the cached parent
   states and one read-out per env step) over a ``SyncVectorEnv`` of 64 ``gymnasium.make`` copies; default
   arguments (x16 victim, next-character API, 100 queries), random valid actions, copies'
   episodes staggered.
2. **step / bare pass** (reported): one native step at 64 copies over a bare batched GRU
   step plus read-out on 64 states (``model.step`` + ``digit_logprobs``): what the frontier
   bookkeeping costs on top of the model.

Timing: ``time.perf_counter``, warm-up first, the two sides in alternating blocks, the
median per-repetition ratio (:func:`deploy_envs.benchmarking.paired`). ``--threads 1``
(the default here) runs torch on one thread on both sides.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, add_threads_option, apply_threads, bench_parser, machine_info, native_vs_sync, paired, write_results

ENV_ID = "deploy_envs/DataExtraction-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "data_extraction.json"
TARGETS = {"native_vs_sync": 8.0}


def bench_native_vs_sync(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    return native_vs_sync(ENV_ID, num_envs, seed=seed, inner_sync=2 if quick else 4, inner_native=10 if quick else 40,
                         reps=3 if quick else 7, stagger=50, target=TARGETS["native_vs_sync"])


def bench_step_vs_bare(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    env = gym.make_vec(ENV_ID, num_envs=num_envs)
    step = Stepper(env, seed, stagger=50)
    model = env.unwrapped.core.api.model
    h = torch.randn(num_envs, model.hidden)
    tok = torch.full((num_envs,), 10, dtype=torch.long)

    def bare() -> None:
        model.digit_logprobs(model.step(h, tok))

    inner = 10 if quick else 100
    res = paired(step, bare, inner_a=inner, inner_b=inner, reps=3 if quick else 7, warmup=3)
    env.close()
    return {"num_envs": num_envs, "step_us": 1e6 * res["a_s"], "bare_pass_us": 1e6 * res["b_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(parser, default=1)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "targets": TARGETS}
    results["native_vs_sync"] = [bench_native_vs_sync(64, args.quick, args.seed)]
    results["step_vs_bare"] = [bench_step_vs_bare(64, args.quick, args.seed)]
    results["seconds"] = time.perf_counter() - t0
    for r in results["native_vs_sync"]:
        print(f"DataExtraction-v0 native vs sync, {r['num_envs']} copies: {r['ratio']:.1f}x (target >= 8: "
              f"{'yes' if r['met'] else 'NO'}); {r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s")
    for r in results["step_vs_bare"]:
        print(f"DataExtraction-v0 step / bare GRU pass, {r['num_envs']} copies: {r['ratio']:.2f}x "
              f"({r['step_us']:,.0f} vs {r['bare_pass_us']:,.0f} us)")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput benchmark of ``deploy_envs/MembershipInference-v0`` and of the ``ExtractionGuard-v0`` batched core.

Run from the repository root::

    python benchmarks/bench_membership.py            # full run (a minute or two on 2 idle CPU cores)
    python benchmarks/bench_membership.py --quick    # smoke run

Ratios, each measured within this one run, written with the raw timings to
``benchmarks/results/membership.json``:

1. **native vs sync** (target >= 8, as for every env of the model-API issue): steps
   per second of ``gymnasium.make_vec("deploy_envs/MembershipInference-v0", num_envs=64)``
   (one API call for all copies' candidates) over a ``SyncVectorEnv`` of 64
   ``gymnasium.make`` copies, default arguments (standard victim, full probabilities,
   100 candidates per episode), random valid scores; copies' episodes staggered.
2. **step / bare pass** (reported): time of one native step at 64 copies over a bare
   batched forward pass of the same victim on 64 inputs (``model(x)`` under
   ``no_grad``): what the env, the API's accounting and the metrics cost on top of
   the victim.
3. **game: batched core vs single games** (reported): rounds per second of one
   :class:`~deploy_envs.topics.extraction.extraction_guard.ExtractionGuardCore` with 16 copies
   over 16 single PettingZoo ``ExtractionGuard-v0`` games stepped one after another,
   random valid joint actions, default arguments.

Torch's thread setting is used as it is unless ``--threads N`` is given. On a loaded
machine small forward passes on several threads can spend most of their time waiting
for each other; ``--threads 1`` avoids that and is what the shipped numbers used.

Timing: ``time.perf_counter``, warm-up first, the two sides of a ratio in alternating
blocks, the median of the per-repetition ratios reported
(:func:`deploy_envs.benchmarking.paired`).
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
from deploy_envs.benchmarking import Stepper, add_threads_option, apply_threads, bench_parser, machine_info, native_vs_sync, paired, write_results

ENV_ID = "deploy_envs/MembershipInference-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "membership.json"
TARGETS = {"native_vs_sync": 8.0}


def bench_native_vs_sync(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    return native_vs_sync(ENV_ID, num_envs, seed=seed, inner_sync=2 if quick else 5, inner_native=20 if quick else 100,
                         reps=3 if quick else 7, stagger=100, target=TARGETS["native_vs_sync"])


def bench_step_vs_bare(num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    env = gym.make_vec(ENV_ID, num_envs=num_envs)
    step = Stepper(env, seed, stagger=100)
    api = env.unwrapped.core.api
    x = torch.from_numpy(np.random.default_rng(seed).random((num_envs, api.d), dtype=np.float32)).view(num_envs, *api.input_shape)

    def bare() -> None:
        with torch.no_grad():
            api.model(x)

    inner = 20 if quick else 200
    res = paired(step, bare, inner_a=inner, inner_b=inner, reps=3 if quick else 9, warmup=3)
    env.close()
    return {"num_envs": num_envs, "step_us": 1e6 * res["a_s"], "bare_pass_us": 1e6 * res["b_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]]}


def bench_game(num_copies: int, quick: bool, seed: int) -> dict[str, Any]:
    from deploy_envs.topics.extraction.extraction_guard import AGENTS, ExtractionGuardCore, parallel_env

    core = ExtractionGuardCore(num_envs=num_copies)
    singles = [parallel_env() for _ in range(num_copies)]
    rng = np.random.default_rng(seed)
    ext = core.action_spaces["extractor"]
    acts = {"extractor": rng.random((num_copies, ext.shape[0]), dtype=np.float32),
            "guard": rng.integers(core.action_spaces["guard"].nvec, size=(num_copies, 3))}
    idx = np.arange(num_copies)
    core.seed(seed)
    core.reset_indices(idx)
    for i, g in enumerate(singles):
        g.reset(seed=seed + i)

    def batched() -> None:
        if core.round[0] >= core.rounds:
            core.reset_indices(idx)
        core.step_indices(idx, core.validate_actions(acts, num_copies))

    def one_by_one() -> None:
        for i, g in enumerate(singles):
            if not g.agents:
                g.reset()
            g.step({a: acts[a][i] for a in AGENTS})

    res = paired(one_by_one, batched, inner_a=2 if quick else 5, inner_b=2 if quick else 5, reps=3 if quick else 5, warmup=1)
    return {"copies": num_copies, "batched_rounds_per_s": num_copies / res["b_s"], "single_rounds_per_s": num_copies / res["a_s"],
            "ratio": res["ratio"], "ratio_range": [res["ratio_min"], res["ratio_max"]]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "targets": TARGETS}
    results["native_vs_sync"] = [bench_native_vs_sync(64, args.quick, args.seed)]
    results["step_vs_bare"] = [bench_step_vs_bare(64, args.quick, args.seed)]
    results["game_batched_vs_single"] = [bench_game(16, args.quick, args.seed)]
    results["seconds"] = time.perf_counter() - t0
    for r in results["native_vs_sync"]:
        print(f"MembershipInference-v0 native vs sync, {r['num_envs']} copies: {r['ratio']:.1f}x (target >= 8: "
              f"{'yes' if r['met'] else 'NO'}); {r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s")
    for r in results["step_vs_bare"]:
        print(f"MembershipInference-v0 step / bare pass, {r['num_envs']} copies: {r['ratio']:.2f}x "
              f"({r['step_us']:,.0f} vs {r['bare_pass_us']:,.0f} us)")
    for r in results["game_batched_vs_single"]:
        print(f"ExtractionGuard-v0 batched core vs {r['copies']} single games: {r['ratio']:.1f}x "
              f"({r['batched_rounds_per_s']:,.1f} vs {r['single_rounds_per_s']:,.1f} rounds/s)")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput benchmark of ``deploy_envs/Backdoor-v0``.

Run from the repository root::

    python benchmarks/bench_backdoor.py            # full run
    python benchmarks/bench_backdoor.py --quick    # smoke run

It prints the ratio, measured within this one run, and writes it with the raw
timings to ``benchmarks/results/backdoor.json``:

**native vs sync**: episodes (an explicit reset and the one step) per second of
``gymnasium.make_vec(id, num_envs=32)`` (all 32 victims trained in one set of
batched matrix products, :mod:`deploy_envs.topics.backdoor.mlp`) over those of a
``gymnasium.vector.SyncVectorEnv`` of 32 ``gymnasium.make(id)`` copies, same
kwargs, random valid actions. Target (issue 3): >= 10.

Every step trains each copy's MLP for ``train_steps`` full-batch Adam steps, so
both sides do the same arithmetic per copy (about ``6 N d h`` flops per Adam
step: 35 MFLOP on digits with 64 hidden units); the batch removes the per-call
overhead and runs larger matrix products, it cannot remove the arithmetic. The
ratio therefore shrinks as the victim grows; it is reported for the default victim
and a small one (16 hidden units).

Timing: ``time.perf_counter``, warm-up first, the two sides in alternating blocks,
the median of the per-repetition ratios reported (:mod:`deploy_envs.benchmarking`).
Torch runs on one thread by default (``--threads``).
"""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import (
    add_device_option,
    add_threads_option,
    apply_threads,
    bench_parser,
    device_kwargs,
    paired,
    parse_device,
    write_results,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_poisoning import machine

ENV_ID = "deploy_envs/Backdoor-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "backdoor.json"
TARGET = 10.0
CONFIGS = {"default (64 hidden, 100 steps)": {}, "small (16 hidden, 100 steps)": {"hidden_sizes": [16]}}


class Episode:
    """One whole episode of every copy: an explicit ``reset`` and the single ``step`` (no autoreset steps timed)."""

    def __init__(self, env: gym.vector.VectorEnv, seed: int, pool: int = 8) -> None:
        self.env = env
        env.action_space.seed(seed)
        self.actions = [env.action_space.sample() for _ in range(pool)]
        self.i = 0
        env.reset(seed=seed)

    def __call__(self) -> None:
        self.env.reset()
        self.env.step(self.actions[self.i % len(self.actions)])
        self.i += 1


def bench_native_vs_sync(name: str, kwargs: dict, num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    native = gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
    sync = gym.vector.SyncVectorEnv([partial(gym.make, ENV_ID, **kwargs) for _ in range(num_envs)])
    n_ep, s_ep = Episode(native, seed), Episode(sync, seed)
    res = paired(s_ep, n_ep, inner_a=1, inner_b=1 if quick else 2, reps=3 if quick else 5, warmup=1)
    native.close()
    sync.close()
    return {"config": name, "kwargs": kwargs, "num_envs": num_envs, "native_episodes_per_s": num_envs / res["b_s"],
            "sync_episodes_per_s": num_envs / res["a_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]], "target": TARGET, "met": res["ratio"] >= TARGET}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(parser, default=1)
    add_device_option(parser)
    args = parser.parse_args(argv)
    device = parse_device(parser, args)
    apply_threads(args.threads)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "target": TARGET}
    t0 = time.perf_counter()
    configs = dict(list(CONFIGS.items())[:1]) if args.quick else CONFIGS
    results["device"] = str(device)
    results["native_vs_sync"] = [bench_native_vs_sync(n, {**kw, **device_kwargs(device)}, 32, args.quick, args.seed)
                                 for n, kw in configs.items()]
    results["seconds"] = time.perf_counter() - t0
    for r in results["native_vs_sync"]:
        print(f"native vs sync, {r['config']}, {r['num_envs']} copies: {r['ratio']:.1f}x (target >= {TARGET:g}x, "
              f"{'met' if r['met'] else 'NOT met'}): {r['native_episodes_per_s']:.1f} vs {r['sync_episodes_per_s']:.1f} episodes/s")
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Probe-throughput benchmark of ``deploy_envs/TrojanDetection-v0``.

Run from the repository root::

    python benchmarks/bench_trojans.py            # full run
    python benchmarks/bench_trojans.py --quick    # smoke run (seconds)

Every copy of the native vector env holds a *different* model of the population, so a
probe step is one batched forward pass with stacked weights (one ``bmm`` per layer). It
reports ratios measured within this one run (``deploy_envs.benchmarking.paired``:
alternating blocks, median of the per-repetition ratios) and writes them to
``benchmarks/results/trojans.json``:

1. **step / bare batched forward**: one ``env.step`` of ``N`` probing copies over the bare
   batched forward pass of the same stamped inputs through the same stacked weights
   (``Population.logits``). Reported, no target: the forward pass of these tiny MLPs costs
   microseconds, so the env's decoding, stamping, softmax means and flip rates weigh in.
2. **per-model loop / batched forward**: ``N`` separate forward passes, one per model (what
   an env without stacked weights would do), over the one batched pass. Reported, no target.
3. **native vs sync**: steps per second of ``make_vec(id, N)`` over a ``SyncVectorEnv`` of
   ``N`` single envs (:func:`deploy_envs.benchmarking.native_vs_sync`). Target: >= 10 at 64 copies.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import machine_info, native_vs_sync, paired

ENV_ID = "deploy_envs/TrojanDetection-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "trojans.json"
TARGETS = {"native_vs_sync": 10.0}


def probe_actions(core, n: int, seed: int) -> np.ndarray:
    """Random probes (random masks and patterns), never declaring."""
    rng = np.random.default_rng(seed)
    r = core.resolution
    return core.encode(rng.random((n, r, r)), rng.random((n, r, r)), declare=False)


def bench_step(n: int, probe_size: int, reps: int) -> dict:
    env = gym.make_vec(ENV_ID, num_envs=n, probe_size=probe_size, max_queries=10**6)
    core = env.unwrapped.core
    env.reset(seed=0)
    actions = probe_actions(core, n, 0)
    dec = core.decode(actions)
    x = core.stamp(dec["mask"], dec["pattern"])
    models = core.model.copy()
    pop = core.pop

    def step():
        env.step(actions)

    def bare():
        with torch.no_grad():
            pop.logits(models, x)

    def loop():
        with torch.no_grad():
            for b in range(n):
                pop.logits(models[b:b + 1], x[b:b + 1])

    sb = paired(step, bare, inner_a=20, inner_b=20, reps=reps, warmup=3)
    lb = paired(loop, bare, inner_a=5, inner_b=20, reps=reps, warmup=2)
    env.close()
    return {
        "num_envs": n, "probe_size": probe_size, "distinct_models": len(np.unique(models)),
        "step_s": sb["a_s"], "bare_s": sb["b_s"], "step_vs_bare": sb["ratio"], "step_vs_bare_range": [sb["ratio_min"], sb["ratio_max"]],
        "loop_s": lb["a_s"], "loop_vs_batched": lb["ratio"], "loop_vs_batched_range": [lb["ratio_min"], lb["ratio_max"]],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    reps = 3 if args.quick else 7
    sizes = [64] if args.quick else [64, 256]
    results = {"machine": machine_info(), "step": [bench_step(n, 32, reps) for n in sizes]}
    nv = native_vs_sync(ENV_ID, 64, {"probe_size": 32, "max_queries": 10}, reps=5 if args.quick else 11, inner_sync=6, inner_native=40,
                        target=TARGETS["native_vs_sync"])
    results["native_vs_sync"] = nv
    for r in results["step"]:
        print(f"{r['num_envs']:>4} copies ({r['distinct_models']} distinct models): env step / bare batched forward "
              f"{r['step_vs_bare']:.2f}x; per-model loop / batched forward {r['loop_vs_batched']:.1f}x")
    print(f"native vs sync, 64 copies: {nv['ratio']:.1f}x (target >= {TARGETS['native_vs_sync']}): "
          f"{nv['native_steps_per_s']:,.0f} vs {nv['sync_steps_per_s']:,.0f} steps/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()

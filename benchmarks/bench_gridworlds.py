"""Throughput benchmark of the alignment gridworlds: native batch vs ``SyncVectorEnv``.

Run from the repository root::

    python benchmarks/bench_gridworlds.py           # all gridworlds, 256 copies
    python benchmarks/bench_gridworlds.py --quick   # fewer repetitions
    python benchmarks/bench_gridworlds.py --penalties   # the side-effect worlds with each penalty on

For each gridworld it reports the ratio of steps per second of
``gymnasium.make_vec(id, num_envs=256)`` (the native batch) over those of a
``gymnasium.vector.SyncVectorEnv`` of 256 ``gymnasium.make(id)`` copies, with random
valid actions (pre-drawn, the same for both sides). Target: >= 30. The two sides run in
alternating blocks, the ratio of each repetition comes from its two adjacent blocks, and
the median over repetitions is reported (so a burst of load from other processes hits
both). Results go to ``benchmarks/results/gridworlds.json``.

With ``--penalties`` it measures the side-effect worlds (SideEffectsSokoban, ConveyorBelt) with
each side-effect penalty on (``deploy_envs.topics.gridworlds.penalties``): the native batch
wrapped once against ``SyncVectorEnv`` of singles wrapped each, into
``benchmarks/results/gridworlds_penalties.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


import deploy_envs  # noqa: F401  (registers the envs)
from functools import partial

import gymnasium as gym

from deploy_envs.topics.gridworlds import GRIDWORLD_IDS, SIDE_EFFECT_IDS
from deploy_envs.topics.gridworlds.penalties import PENALTIES, apply_penalty
from deploy_envs.benchmarking import Stepper, native_vs_sync, paired

RESULTS = Path(__file__).resolve().parent / "results" / "gridworlds.json"
PENALTY_RESULTS = RESULTS.with_name("gridworlds_penalties.json")
TARGET = 30.0


def bench(env_id: str, num_envs: int, reps: int, seed: int = 0) -> dict:
    res = native_vs_sync(env_id, num_envs, seed=seed, inner_sync=5, inner_native=50, reps=reps, warmup=5)
    return {"env_id": env_id, **res}


def _penalised_single(env_id: str, penalty: str):
    return apply_penalty(gym.make(env_id), penalty)


def bench_penalty(env_id: str, penalty: str, num_envs: int, reps: int, seed: int = 0) -> dict:
    """Native batch with the penalty vs ``SyncVectorEnv`` of penalised singles (same alternating protocol)."""
    native = apply_penalty(gym.make_vec(env_id, num_envs=num_envs), penalty)
    sync = gym.vector.SyncVectorEnv([partial(_penalised_single, env_id, penalty) for _ in range(num_envs)])
    try:
        res = paired(Stepper(sync, seed), Stepper(native, seed), inner_a=5, inner_b=50, reps=reps, warmup=5)
    finally:
        native.close()
        sync.close()
    return {
        "env_id": env_id,
        "penalty": penalty,
        "num_envs": num_envs,
        "native_steps_per_s": num_envs / res["b_s"],
        "sync_steps_per_s": num_envs / res["a_s"],
        "ratio": res["ratio"],
        "ratio_range": [res["ratio_min"], res["ratio_max"]],
        "reps": reps,
    }


def main_penalties(num_envs: int, reps: int) -> None:
    rows = [bench_penalty(env_id, p, num_envs, reps) for env_id in SIDE_EFFECT_IDS for p in PENALTIES]
    print(f"{'env':24s} {'penalty':12s} {'native steps/s':>15s} {'sync steps/s':>13s} {'ratio':>7s}  (target >= {TARGET:.0f})")
    for r in rows:
        flag = "ok" if r["ratio"] >= TARGET else "BELOW TARGET"
        print(f"{r['env_id'].split('/')[1]:24s} {r['penalty']:12s} {r['native_steps_per_s']:15.0f} {r['sync_steps_per_s']:13.0f} {r['ratio']:7.1f}  {flag}")
    PENALTY_RESULTS.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(), "target": TARGET, "rows": rows}, indent=2) + "\n")
    print(f"wrote {PENALTY_RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--penalties", action="store_true", help="the side-effect worlds with each penalty on")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    if args.penalties:
        main_penalties(args.num_envs, reps)
        return
    rows = [bench(env_id, args.num_envs, reps) for env_id in GRIDWORLD_IDS]
    print(f"{'env':28s} {'native steps/s':>15s} {'sync steps/s':>13s} {'ratio':>7s}  (target >= {TARGET:.0f})")
    for r in rows:
        flag = "ok" if r["ratio"] >= TARGET else "BELOW TARGET"
        print(f"{r['env_id'].split('/')[1]:28s} {r['native_steps_per_s']:15.0f} {r['sync_steps_per_s']:13.0f} {r['ratio']:7.1f}  {flag}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(), "target": TARGET, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

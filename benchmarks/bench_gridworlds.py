"""Throughput benchmark of the alignment gridworlds: native batch vs ``SyncVectorEnv``.

Run from the repository root::

    python benchmarks/bench_gridworlds.py           # all gridworlds, 256 copies
    python benchmarks/bench_gridworlds.py --quick   # fewer repetitions

For each gridworld it reports the ratio of steps per second of
``gymnasium.make_vec(id, num_envs=256)`` (the native batch) over those of a
``gymnasium.vector.SyncVectorEnv`` of 256 ``gymnasium.make(id)`` copies, with random
valid actions (pre-drawn, the same for both sides). Target: >= 30. The two sides run in
alternating blocks, the ratio of each repetition comes from its two adjacent blocks, and
the median over repetitions is reported (so a burst of load from other processes hits
both). Results go to ``benchmarks/results/gridworlds.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.topics.gridworlds import GRIDWORLD_IDS
from deploy_envs.benchmarking import native_vs_sync

RESULTS = Path(__file__).resolve().parent / "results" / "gridworlds.json"
TARGET = 30.0


def bench(env_id: str, num_envs: int, reps: int, seed: int = 0) -> dict:
    res = native_vs_sync(env_id, num_envs, seed=seed, inner_sync=5, inner_native=50, reps=reps, warmup=5)
    return {"env_id": env_id, **res}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    reps = 3 if args.quick else 7
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

"""Throughput benchmark of SafeNavigation-v0: native batch vs ``SyncVectorEnv``.

Run from the repository root::

    python benchmarks/bench_safety.py           # levels 0, 1, 2 with 256 copies
    python benchmarks/bench_safety.py --quick   # fewer repetitions

For each level it reports the ratio of steps per second of
``gymnasium.make_vec("deploy_envs/SafeNavigation-v0", num_envs=256, level=L)`` (the native
batch) over those of a ``gymnasium.vector.SyncVectorEnv`` of 256 ``gymnasium.make`` copies,
with random valid actions (pre-drawn, the same for both sides) and the default 1000-step
episodes (autoresets included). Target: >= 30. The two sides run in alternating blocks,
each repetition's ratio comes from its two adjacent blocks, and the median over
repetitions is reported (so a burst of load from other processes hits both). Absolute
steps/s are context only: Safety-Gymnasium simulates MuJoCo physics, this is a damped
unicycle in numpy. Results go to ``benchmarks/results/safety.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import native_vs_sync

ENV_ID = "deploy_envs/SafeNavigation-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "safety.json"
TARGET = 30.0


def bench(level: int, num_envs: int, reps: int, seed: int = 0) -> dict:
    res = native_vs_sync(ENV_ID, num_envs, {"level": level}, seed=seed, inner_sync=5, inner_native=100, reps=reps, warmup=5)
    return {"env_id": ENV_ID, "level": level, **res}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-envs", type=int, default=256)
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    rows = [bench(level, args.num_envs, reps) for level in (0, 1, 2)]
    print(f"{'env':34s} {'native steps/s':>15s} {'sync steps/s':>13s} {'ratio':>7s}  (target >= {TARGET:.0f})")
    for r in rows:
        flag = "ok" if r["ratio"] >= TARGET else "BELOW TARGET"
        print(f"{'SafeNavigation-v0 level ' + str(r['level']):34s} {r['native_steps_per_s']:15.0f} {r['sync_steps_per_s']:13.0f} {r['ratio']:7.1f}  {flag}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(), "target": TARGET, "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Native batch vs ``SyncVectorEnv`` of single envs for the torch cores, on any torch device.

Run from the repository root::

    python benchmarks/bench_gpu.py --device cuda               # 32, 256 and 1,024 copies (a few minutes on a fast GPU)
    python benchmarks/bench_gpu.py --device cpu --quick        # smoke run (about a minute on 2 CPU cores)
    python benchmarks/bench_gpu.py --device cuda --sizes 256 --out /tmp/gpu.json

For each env whose core takes ``device=`` (Poisoning, Backdoor, TrainingControl,
Evasion, ModelExtraction, Explanation, TrojanDetection; an env whose core takes none is
listed as not measured) and each number of copies ``N``, it measures

* **native**: steps per second (copies x steps / s) of
  ``gymnasium.make_vec(id, num_envs=N, device=D)``, the core stepping all copies
  at once on the device;
* **sync**: steps per second of ``gymnasium.vector.SyncVectorEnv`` of single
  ``gymnasium.make(id, device=D)`` envs on the same device, the way a user without
  the native batch steps them;

and reports their ratio. Both sides step with the same random valid actions
(:class:`deploy_envs.benchmarking.Stepper`, env defaults otherwise; Poisoning-v0's
copies first run into steady state at staggered episode phases, since its last step
retrains 20 times longer than the others), take one untimed warm-up step (a
reused sync env none), and are timed in ``--reps`` alternating blocks (the order
flips every repetition); the ratio is the median of the per-repetition ratios.

Bounding the wall time: each block times whole steps until at least
``--min-steps`` steps and ``--seconds`` seconds have passed, or ``--max-seconds``
(at least one step is always timed). A ``SyncVectorEnv`` is a Python loop over its
copies, so its steps/s does not depend on how many copies it holds; it is built with
``min(N, --sync-copies)`` copies (64 by default) and reused for the sizes above that,
so the slowest side (1,024 single envs, each retraining its own model) does not
dominate the run. The JSON records ``sync_num_envs`` for every row. On CUDA every
timed step ends with ``torch.cuda.synchronize()``.

Writes ``benchmarks/results/gpu_<device>.json`` (``--out`` to change) with the
machine (the GPU's name from ``torch.cuda.get_device_name`` on CUDA), the settings,
and per env and size: steps/s of both sides, steps timed, seconds, and the ratio.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import (
    Stepper,
    add_threads_option,
    apply_threads,
    synchronize,
)
from deploy_envs.core.registration import env_arguments
from deploy_envs.core.validation import check_device

logger = logging.getLogger(__name__)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENVS = (
    "Poisoning-v0",
    "Backdoor-v0",
    "TrainingControl-v0",
    "Evasion-v0",
    "ModelExtraction-v0",
    "Explanation-v0",
    "TrojanDetection-v0",
)
# the batch-size targets of the issue this benchmark answers: at 256 copies, for the compute-bound cores
TARGETS = {"Poisoning-v0": 10.0, "Backdoor-v0": 10.0, "TrainingControl-v0": 10.0}
TARGET_SIZE = 256
# envs whose steps differ in cost through an episode (Poisoning-v0: 20 retraining steps a step, 400 at
# the last of its 43): their copies are first run into steady state at staggered episode phases
# (Stepper's ``stagger``), so that every timed step carries its share of the expensive ones
STAGGER = {"Poisoning-v0": 43}
# --quick: lighter settings so that a CPU smoke run stays near a minute (recorded as each row's kwargs)
QUICK_KWARGS = {"Backdoor-v0": {"train_steps": 10}, "TrainingControl-v0": {"steps_per_action": 5}}


def time_steps(step, device: torch.device, min_steps: int, seconds: float, max_seconds: float) -> dict[str, float]:
    """Time whole steps of ``step`` until ``min_steps`` and ``seconds`` are reached, or ``max_seconds`` (at least one step)."""
    synchronize(device)
    t0 = time.perf_counter()
    n = 0
    while True:
        step()
        n += 1
        synchronize(device)
        elapsed = time.perf_counter() - t0
        if (n >= min_steps and elapsed >= seconds) or elapsed >= max_seconds:
            return {"steps": n, "seconds": elapsed}


def build(env_fn, seed: int, stagger: int = 0):
    """Build a vector env and its stepper (staggered into steady state); return them with the seconds it took."""
    t0 = time.perf_counter()
    env = env_fn()
    return env, Stepper(env, seed, pool=4, stagger=stagger), time.perf_counter() - t0


def compare(native: Stepper, sync: Stepper, n: int, m: int, device: torch.device, args, warm_sync: bool = True) -> dict[str, Any]:
    """Time the two sides in ``args.reps`` alternating blocks (order flipped each repetition) after one warm-up step each
    (the sync side's only when ``warm_sync``: a reused one is warm).

    Steps/s count every copy; the ratio is the median over repetitions of native over sync steps/s.
    """
    native()  # warm-up (kernels, caches, the first autoreset bookkeeping)
    if warm_sync:
        sync()
    blocks: dict[str, list[dict[str, float]]] = {"native": [], "sync": []}
    for r in range(args.reps):
        order = ("native", "sync") if r % 2 == 0 else ("sync", "native")
        for side in order:
            blocks[side].append(time_steps(native if side == "native" else sync, device, args.min_steps, args.seconds, args.max_seconds))

    def rate(b: dict[str, float], copies: int) -> float:
        return copies * b["steps"] / b["seconds"]

    ratios = sorted(rate(a, n) / rate(b, m) for a, b in zip(blocks["native"], blocks["sync"]))
    side = {}
    for name, copies in (("native", n), ("sync", m)):
        rates = sorted(rate(b, copies) for b in blocks[name])
        side[name] = {"num_envs": copies, "steps_per_s": statistics.median(rates), "blocks": blocks[name]}
    return {**side, "ratio": statistics.median(ratios), "ratio_range": [ratios[0], ratios[-1]]}


def bench_env(name: str, sizes: list[int], device: torch.device, args, bar=None) -> dict[str, Any]:
    env_id = f"deploy_envs/{name}"
    accepted = env_arguments(env_id) or {}
    if "device" not in accepted:
        return {"env": env_id, "measured": False, "reason": "its core takes no device argument"}
    kwargs = {**(QUICK_KWARGS.get(name, {}) if args.quick else {}), "device": str(device)}
    rows, syncs = [], {}
    try:
        for n in sizes:
            m = min(n, args.sync_copies)
            fresh = m not in syncs
            if fresh:  # one SyncVectorEnv of m singles, kept for the sizes that use it
                syncs[m] = build(lambda m=m: gym.vector.SyncVectorEnv([partial(gym.make, env_id, **kwargs) for _ in range(m)]),
                                 args.seed, STAGGER.get(name, 0))
            native_env, native, native_build = build(partial(gym.make_vec, env_id, num_envs=n, **kwargs), args.seed,
                                                     STAGGER.get(name, 0))
            try:
                row = {"num_envs": n, "sync_num_envs": m, **compare(native, syncs[m][1], n, m, device, args, warm_sync=fresh),
                       "build_seconds": {"native": native_build, "sync": syncs[m][2]}}
            finally:
                native_env.close()
            if name in TARGETS and n == TARGET_SIZE:
                row["target"] = TARGETS[name]
                row["met"] = row["ratio"] >= TARGETS[name]
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{name} x{n}: {row['ratio']:.1f}x")
    finally:
        for env, _, _ in syncs.values():
            env.close()
    return {"env": env_id, "measured": True, "kwargs": kwargs, "stagger": STAGGER.get(name, 0), "rows": rows}


def machine(device: torch.device) -> dict[str, Any]:
    info = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "gymnasium": gym.__version__, "device": str(device),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"gpu": torch.cuda.get_device_name(device), "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32})
    return info


def report(results: dict[str, Any]) -> None:
    header = ("env", "copies", "native steps/s", "sync steps/s (copies)", "ratio", "target")
    rows = []
    for e in results["envs"]:
        if not e["measured"]:
            rows.append((e["env"].split("/")[1], "-", "-", "-", "not measured", e["reason"]))
            continue
        for r in e["rows"]:
            target = f">= {r['target']:g}x {'met' if r['met'] else 'NOT met'}" if "target" in r else ""
            rows.append((e["env"].split("/")[1], str(r["num_envs"]), f"{r['native']['steps_per_s']:,.0f}",
                         f"{r['sync']['steps_per_s']:,.0f} ({r['sync_num_envs']})", f"{r['ratio']:.1f}x", target))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device of both sides (default: cuda where available, else cpu)")
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 8 and 32, short timings, lighter settings")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of copies (default 32 256 1024; --quick: 8 32)")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS, help="envs to measure (default: all)")
    parser.add_argument("--sync-copies", type=int, default=None,
                        help="most copies in a SyncVectorEnv (default 64; --quick: 4); its steps/s does not depend on it")
    parser.add_argument("--min-steps", type=int, default=None, help="least steps per timed block (default 1)")
    parser.add_argument("--seconds", type=float, default=None, help="least seconds per timed block (default 1; --quick: 0.3)")
    parser.add_argument("--max-seconds", type=float, default=None, help="most seconds per timed block (default 6; --quick: 3)")
    parser.add_argument("--reps", type=int, default=None, help="alternating timed blocks per side (default 2; --quick: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/gpu_<device type>.json)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    try:
        device = check_device("--device", args.device)
    except ValueError as err:
        parser.error(str(err))
    defaults = {"sizes": ([8, 32], [32, 256, 1024]), "sync_copies": (4, 64), "min_steps": (1, 1),
                "seconds": (0.3, 1.0), "max_seconds": (3.0, 6.0), "reps": (1, 2)}
    for key, (quick, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if min(args.sizes) < 1 or args.sync_copies < 1 or args.min_steps < 1 or args.reps < 1:
        parser.error("--sizes, --sync-copies, --min-steps and --reps must be positive")
    apply_threads(args.threads)
    out = args.out or RESULTS_DIR / f"gpu_{device.type}.json"

    settings = {k: getattr(args, k) for k in ("quick", "sizes", "sync_copies", "min_steps", "seconds", "max_seconds", "reps", "seed")}
    results: dict[str, Any] = {"machine": machine(device), "settings": settings, "targets": TARGETS,
                               "target_num_envs": TARGET_SIZE, "envs": []}
    t0 = time.perf_counter()
    try:
        from tqdm import tqdm

        bar = tqdm(total=len(args.envs) * len(args.sizes), desc="native vs sync", unit="measure")
    except ImportError:  # pragma: no cover - tqdm is a dependency of the training extra
        bar = None
    for name in args.envs:
        try:
            results["envs"].append(bench_env(name, args.sizes, device, args, bar))
        except Exception as err:  # one env failing on a device must not lose the others' figures
            logger.exception("%s failed on %s", name, device)
            results["envs"].append({"env": f"deploy_envs/{name}", "measured": False, "reason": f"failed: {err!r}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if bar is not None and not results["envs"][-1]["measured"]:
            bar.update(len(args.sizes))
    if bar is not None:
        bar.close()
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - t0
    report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

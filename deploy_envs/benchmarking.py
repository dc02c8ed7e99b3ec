"""Timing helpers shared by the scripts in ``benchmarks/``.

Every benchmark reports *ratios measured within one run*: the two sides of a ratio
run in alternating blocks (the order flips every repetition), each repetition's
ratio comes from its two adjacent blocks, and the median over repetitions is
reported with its range. That keeps a ratio meaningful on a shared machine whose
load changes during the run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def block(fn: Callable[[], Any], inner: int) -> float:
    """Mean seconds per call of ``fn`` over ``inner`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def paired(a: Callable[[], Any], b: Callable[[], Any], *, inner_a: int, inner_b: int, reps: int, warmup: int) -> dict[str, Any]:
    """Time ``a`` and ``b`` in alternating blocks; medians and the median per-repetition ratio ``t(a) / t(b)``."""
    for _ in range(warmup):
        a()
        b()
    ta, tb, ratios = [], [], []
    for r in range(reps):
        if r % 2 == 0:
            x, y = block(a, inner_a), block(b, inner_b)
        else:
            y, x = block(b, inner_b), block(a, inner_a)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return {
        "a_s": statistics.median(ta),
        "b_s": statistics.median(tb),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "reps": reps,
    }


class Stepper:
    """Steps a vector env with pre-drawn random valid actions.

    With ``stagger`` > 0 the copies are first run into steady state with partial
    resets at random phases, so episode ends (and autoresets) spread over the steps
    as in steady use rather than arriving all at once. With ``count_ends`` it counts
    the timed ``steps`` and the episode ends among them (``ends``).
    """

    def __init__(self, env: gym.vector.VectorEnv, seed: int, pool: int = 16, stagger: int = 0, count_ends: bool = False) -> None:
        self.env = env
        env.action_space.seed(seed)
        self.actions = [env.action_space.sample() for _ in range(pool)]
        self.i = 0
        self.count_ends = count_ends
        self.steps = self.ends = 0
        env.reset(seed=seed)
        if stagger:
            phase = np.random.default_rng(seed).integers(stagger, size=env.num_envs)
            for k in range(stagger + 10):
                self()
                if k < stagger and (phase == k).any():
                    env.reset(options={"reset_mask": phase == k})
        self.steps = self.ends = 0

    def __call__(self) -> None:
        out = self.env.step(self.actions[self.i % len(self.actions)])
        self.i += 1
        if self.count_ends:
            self.steps += 1
            self.ends += int((out[2] | out[3]).sum())


def native_vs_sync(
    env_id: str,
    num_envs: int,
    kwargs: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    inner_sync: int = 3,
    inner_native: int = 30,
    reps: int = 7,
    warmup: int = 2,
    stagger: int = 0,
    target: float | None = None,
) -> dict[str, Any]:
    """Steps per second of ``make_vec(env_id, num_envs)`` over ``SyncVectorEnv`` of ``num_envs`` singles.

    With a ``target`` ratio the result also says whether it was ``met``.
    """
    kwargs = dict(kwargs or {})
    native = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    sync = gym.vector.SyncVectorEnv([partial(gym.make, env_id, **kwargs) for _ in range(num_envs)])
    try:
        n_step, s_step = Stepper(native, seed, stagger=stagger), Stepper(sync, seed, stagger=stagger)
        res = paired(s_step, n_step, inner_a=inner_sync, inner_b=inner_native, reps=reps, warmup=warmup)
    finally:
        native.close()
        sync.close()
    out = {
        "env": env_id,
        "num_envs": num_envs,
        "kwargs": kwargs,
        "native_steps_per_s": num_envs / res["b_s"],
        "sync_steps_per_s": num_envs / res["a_s"],
        "ratio": res["ratio"],
        "ratio_range": [res["ratio_min"], res["ratio_max"]],
    }
    if target is not None:
        out.update(target=target, met=res["ratio"] >= target)
    return out


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    from deploy_envs.performance import cpu_model

    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def bench_parser(doc: str | None, results: Path, *, seed: bool = True, quick_help: str | None = None) -> argparse.ArgumentParser:
    """The command line every benchmark script starts from: ``--quick``, ``--seed`` (unless ``seed=False``) and
    ``--out`` (default ``results``, the script's results file), described by the first paragraph of ``doc``.

    Add ``--threads`` with :func:`add_threads_option`, ``--device`` with :func:`add_device_option`, and the
    script's own options, then parse."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help or "fewer repetitions and sizes (a smoke run)")
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=results, help=f"JSON results file (default {results})")
    return parser


def add_threads_option(parser: argparse.ArgumentParser, default: int | None = None, help: str | None = None) -> None:
    """``--threads N``: torch's intra-op threads for both sides of every ratio (None: torch's own choice).

    Apply it with :func:`apply_threads` after parsing; a value below 1 is refused by the parser.
    """

    def positive(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"--threads={text} must be a positive integer")
        return n

    default_text = "torch's own choice" if default is None else str(default)
    parser.add_argument("--threads", type=positive, default=default,
                        help=help or f"torch intra-op threads for both sides (default: {default_text})")


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` unless ``threads`` is None."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def add_device_option(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    """``--device D``: the torch device the benchmarked envs run on (passed as their ``device=``).

    Check it with :func:`parse_device` after parsing."""
    parser.add_argument("--device", default=default, help=f"torch device of the envs, e.g. cpu, cuda, cuda:1 (default {default})")


def parse_device(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The ``torch.device`` of ``args.device``; a device this machine lacks ends the script with the parser's usage error."""
    from deploy_envs.core.validation import check_device

    try:
        return check_device("--device", args.device)
    except ValueError as err:
        parser.error(str(err))


def device_kwargs(device) -> dict[str, Any]:
    """``{"device": ...}`` for a non-CPU device, ``{}`` for the CPU (the envs' default, so CPU results keep their kwargs)."""
    return {} if str(device) == "cpu" else {"device": str(device)}


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere. Call before reading a clock."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def write_results(results: dict[str, Any], path: Path) -> None:
    """The tail every benchmark shares: write ``results`` as JSON to ``path`` and say where, with the run's seconds."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {path} ({results['seconds']:.0f} s)")

"""Batched DP-SGD of ``PrivacyAudit-v0`` against sequential opacus runs of the same model.

Run from the repository root::

    python benchmarks/bench_privacy_audit.py            # full run (a few minutes on 2 CPU cores)
    python benchmarks/bench_privacy_audit.py --quick    # smoke run (R = 16 and 64)

Ratio (target >= 5 at R = 64 and R = 256), measured within this one run and written with
the raw timings to ``benchmarks/results/privacy_audit.json``: the time of ``R`` DP-SGD
training runs done one after another with opacus (``PrivacyEngine.make_private`` on a
``nn.Linear(64, 10)``, Poisson sampling, per-sample clipping and noise by opacus, SGD;
a fresh engine per run, as an auditor training ``R`` models would) over the time of the
same ``R`` runs trained at once by :func:`deploy_envs.topics.privacy_audit.dpsgd.train_runs`
(the env's trainer, half the runs with a canary). Same recipe on both sides: 256 digits,
expected batch 128, 8 epochs (16 steps), noise multiplier 1, clip 1, learning rate 2.
The batched side computes in float64, opacus in float32 (its usual type), which favours
opacus.

Timing: ``time.perf_counter``, one warm-up of each side, then the two sides in alternating
blocks (:func:`deploy_envs.benchmarking.paired`), median of the per-repetition ratios;
``--threads 1`` (default) on both sides.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deploy_envs.benchmarking import add_threads_option, apply_threads, machine_info, paired, write_results
from deploy_envs.topics.privacy_audit.dpsgd import Canary, DPConfig, train_runs
from deploy_envs.topics.privacy_audit.privacy_audit import audit_data

RESULTS = Path(__file__).resolve().parent / "results" / "privacy_audit.json"
TARGET = 5.0
CFG = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, batch_size=128, epochs=8, lr=2.0)


def opacus_runs(R: int, data: dict[str, torch.Tensor], seed: int = 0) -> None:
    from opacus import PrivacyEngine

    x, y = data["x"].float(), data["y"]
    for r in range(R):
        torch.manual_seed(seed + r)
        model = nn.Linear(x.shape[1], 10)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        opt = torch.optim.SGD(model.parameters(), lr=CFG.lr)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=CFG.batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, opt, loader = PrivacyEngine(accountant="rdp").make_private(
                module=model, optimizer=opt, data_loader=loader, noise_multiplier=CFG.noise_multiplier,
                max_grad_norm=CFG.max_grad_norm, poisson_sampling=True)
            for _ in range(CFG.epochs):
                for xb, yb in loader:
                    if len(yb) == 0:
                        continue
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.step()


def batched_runs(R: int, data: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    canary = Canary(torch.zeros(R, dtype=torch.long), data["x_test"][:1].repeat(R, 1), data["y_test"][:1].repeat(R),
                    torch.zeros(R, dtype=torch.long))
    included = torch.arange(R) < R // 2
    return train_runs(data["x"], data["y"], 10, CFG, canary, included, [torch.Generator().manual_seed(seed)])


def bench(R: int, quick: bool, data: dict[str, torch.Tensor]) -> dict[str, Any]:
    reps = 3 if quick or R > 64 else 5
    res = paired(lambda: opacus_runs(R, data), lambda: batched_runs(R, data), inner_a=1, inner_b=1, reps=reps, warmup=1)
    return {"runs": R, "opacus_sequential_s": res["a_s"], "batched_s": res["b_s"], "ratio": res["ratio"],
            "ratio_range": [res["ratio_min"], res["ratio_max"]], "reps": reps, "target": TARGET, "met": res["ratio"] >= TARGET}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--runs", type=int, nargs="*", default=None, help="values of R (default 64 256; quick 16 64)")
    add_threads_option(parser, default=1)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    data = audit_data(256)
    sizes = args.runs or ([16, 64] if args.quick else [64, 256])
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "target": TARGET,
                               "recipe": {**CFG.__dict__, "train_size": 256, "steps": CFG.steps(256)}}
    results["batched_vs_opacus"] = []
    for R in sizes:
        r = bench(R, args.quick, data)
        results["batched_vs_opacus"].append(r)
        print(f"PrivacyAudit-v0 batched DP-SGD vs {R} sequential opacus runs: {r['ratio']:.1f}x (target >= {TARGET:g}: "
              f"{'yes' if r['met'] else 'NO'}); {r['batched_s']:.2f} s vs {r['opacus_sequential_s']:.2f} s", flush=True)
    results["seconds"] = time.perf_counter() - t0
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

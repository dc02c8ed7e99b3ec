"""Throughput and attack-quality benchmark of ``deploy_envs/Evasion-v0``.

Run from the repository root::

    python benchmarks/bench_evasion.py            # full run (under a minute on 2 idle CPU cores)
    python benchmarks/bench_evasion.py --quick    # smoke run (seconds)

It prints a table of ratios, each measured within this one run (never absolute
times compared across machines), and writes them with the raw timings to
``benchmarks/results/evasion.json``:

1. **native vs sync**: steps per second of ``gymnasium.make_vec(id, num_envs=64)``
   (the native batch, one forward pass for all copies) over those of a
   ``gymnasium.vector.SyncVectorEnv`` of 64 ``gymnasium.make(id)`` copies, same
   kwargs, random valid actions. Target: >= 8.
2. **step / bare pass**: time of one ``env.step`` of the native batch over the time
   of a bare batched pass of the victim on a batch of the same size (forward only for
   ``scores``; forward + backward w.r.t. the input for ``white_box``). Target: <= 1.3
   at 256 copies; also reported at 64 and 1024.
3. **PGD through the env vs plain torch**: the ``pgd`` baseline driving a
   ``white_box`` env (step mode) against :func:`deploy_envs.metrics.robustness.pgd_attack`
   on the same inputs with the same epsilon, number of steps and step size.
   Targets: success rate through the env >= direct success rate; wall time
   ratio env/direct <= 2.

Timing: ``time.perf_counter``, warm-up first, then repetitions in which the two
sides of a ratio run in alternating blocks (so a burst of load from other processes
hits both), the ratio of each repetition computed from its two adjacent blocks, and
the median over repetitions reported. Torch's thread settings are left as they are.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

import deploy_envs  # noqa: F401  (registers the envs)
from deploy_envs.benchmarking import Stepper, add_threads_option, apply_threads, bench_parser, native_vs_sync, paired, write_results
from deploy_envs.metrics.robustness import pgd_attack

ENV_ID = "deploy_envs/Evasion-v0"
RESULTS = Path(__file__).resolve().parent / "results" / "evasion.json"
TARGETS = {"native_vs_sync": 8.0, "step_vs_bare": 1.3, "pgd_time": 2.0}
STEP_TARGET_COPIES = 256  # the step-vs-bare target holds at this batch size


# ----------------------------------------------------------------- timing
# --------------------------------------------------------- 1. native vs sync
def bench_native_vs_sync(threat_model: str, num_envs: int, quick: bool, seed: int) -> dict[str, Any]:
    # ratio = t(sync step) / t(native step) = native steps/s over sync steps/s
    res = native_vs_sync(ENV_ID, num_envs, {"threat_model": threat_model}, seed=seed, inner_sync=2 if quick else 5,
                         inner_native=10 if quick else 40, reps=3 if quick else 7, warmup=3, stagger=20,
                         target=TARGETS["native_vs_sync"])
    return {"threat_model": threat_model, **res}


# ------------------------------------------------------ 2. step vs bare pass
def bare_pass(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, white_box: bool) -> Callable[[], Any]:
    """The victim's batched pass with nothing around it: forward, plus the input gradient for white_box."""
    if not white_box:

        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward

    def forward_backward() -> None:
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xg), y, reduction="sum")
            torch.autograd.grad(loss, xg)

    return forward_backward


class TrivialVictim(torch.nn.Module):
    """One linear layer: a victim whose pass costs next to nothing, to expose the env's fixed cost per step."""

    def __init__(self, d: int = 64, k: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(d, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def bench_step_vs_bare(threat_model: str, num_envs: int, quick: bool, seed: int, victim: Any = "standard") -> dict[str, Any]:
    kwargs: dict[str, Any] = {"threat_model": threat_model, "victim": victim}
    if isinstance(victim, torch.nn.Module):  # an untrained victim: a small budget keeps its pool of "correct" inputs attackable
        kwargs["epsilon"] = 0.02
    env = gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
    step = Stepper(env, seed, stagger=20, count_ends=True)
    core = env.unwrapped.core
    shape = core.victim.image_shape
    x = torch.from_numpy(np.clip(core.x0 + core.delta, 0.0, 1.0)).view(num_envs, *shape)
    y = torch.from_numpy(core.attack_labels(np.arange(num_envs)))
    bare = bare_pass(core.victim.model, x, y, threat_model == "white_box")
    inner = max(2, int((8 if quick else 30) * 64 / num_envs))
    res = paired(step, bare, inner_a=inner, inner_b=inner, reps=5 if quick else 15, warmup=3)
    env.close()
    return {
        "threat_model": threat_model,
        "num_envs": num_envs,
        "victim": core.victim.name,
        "step_us": res["a_s"] * 1e6,
        "bare_us": res["b_s"] * 1e6,
        "overhead_us": (res["a_s"] - res["b_s"]) * 1e6,
        "ratio": res["ratio"],
        "ratio_range": [res["ratio_min"], res["ratio_max"]],
        "episode_ends_per_step": step.ends / max(1, step.steps),
        "target": TARGETS["step_vs_bare"] if num_envs == STEP_TARGET_COPIES else None,
        "met": (res["ratio"] <= TARGETS["step_vs_bare"]) if num_envs == STEP_TARGET_COPIES else None,
    }


# ------------------------------------------------------ 3. PGD env vs direct
def pgd_agent(env: gym.vector.VectorEnv, core: Any) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], str]:
    """The registered ``pgd`` baseline if it is there, else sign of the observed gradient."""
    try:
        from deploy_envs.core.agents import make_baseline

        agent = make_baseline("pgd", ENV_ID)
        agent.setup(env)
        return agent.act, "baseline 'pgd'"
    except (ImportError, ValueError):  # pragma: no cover - before the baseline existed
        grad = core.obs_slices["gradient"]
        return (lambda obs, start: np.sign(obs[:, grad]).astype(np.float32)), "inline sign(gradient)"


def env_pgd(env: gym.vector.VectorEnv, act: Callable, index: np.ndarray, steps: int) -> np.ndarray:
    """Run ``steps`` PGD steps through the env on inputs ``index``; success of each copy's first episode."""
    n = len(index)
    obs, _ = env.reset(seed=0, options={"index": index})
    start = np.ones(n, dtype=bool)
    finished = np.zeros(n, dtype=bool)
    success = np.zeros(n, dtype=bool)
    for _ in range(steps):
        obs, _, term, trunc, info = env.step(act(obs, start))
        # under NEXT_STEP autoreset a copy that ended restarts on the following step
        start = term | trunc
        new = start & ~finished
        success[new] = info["success"][new]
        finished |= start
    assert finished.all(), "every copy spends its query budget within `steps` steps"
    return success


def bench_pgd(victim: str, n_inputs: int, epsilon: float, steps: int, step_size: float, quick: bool) -> dict[str, Any]:
    kwargs = {
        "victim": victim, "threat_model": "white_box", "action_mode": "step", "norm": "linf",
        "epsilon": epsilon, "step_size": step_size, "max_queries": steps,
    }
    env = gym.make_vec(ENV_ID, num_envs=n_inputs, **kwargs)
    core = env.unwrapped.core
    act, agent_name = pgd_agent(env, core)
    index = core.pool[:n_inputs]
    if len(index) < n_inputs:
        raise SystemExit(f"the victim classifies only {len(index)} test inputs correctly; ask for fewer than {n_inputs}")
    model = core.victim.model
    x = torch.from_numpy(core.victim.images[index]).float()
    y = torch.from_numpy(core.victim.labels[index]).long()
    alpha = step_size * epsilon  # the env moves by step_size * epsilon * action, action = sign(gradient)

    def direct() -> torch.Tensor:
        return pgd_attack(model, x, y, epsilon=epsilon, steps=steps, step_size=alpha, norm="linf")

    def through_env() -> np.ndarray:
        return env_pgd(env, act, index, steps)

    res = paired(through_env, direct, inner_a=1, inner_b=1, reps=3 if quick else 9, warmup=1)
    env_success = through_env()
    adv = direct()
    with torch.no_grad():
        direct_success = (model(adv).argmax(1) != y).numpy()
    linf = float((adv - x).abs().amax().item())
    env.close()
    return {
        "victim": core.victim.name,
        "agent": agent_name,
        "n_inputs": n_inputs,
        "epsilon": epsilon,
        "steps": steps,
        "step_size": alpha,
        "env_success_rate": float(env_success.mean()),
        "direct_success_rate": float(direct_success.mean()),
        "direct_max_linf": linf,
        "env_s": res["a_s"],
        "direct_s": res["b_s"],
        "time_ratio": res["ratio"],
        "time_ratio_range": [res["ratio_min"], res["ratio_max"]],
        "met_strength": bool(env_success.mean() >= direct_success.mean()),
        "met_time": res["ratio"] <= TARGETS["pgd_time"],
    }


# ----------------------------------------------------------------- output
def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def report(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str, str]] = []
    for r in results["native_vs_sync"]:
        rows.append((
            f"native vs sync, {r['threat_model']}, {r['num_envs']} copies",
            f"{r['ratio']:.1f}x",
            f">= {r['target']:g}x",
            "yes" if r["met"] else "NO",
            f"{r['native_steps_per_s']:,.0f} vs {r['sync_steps_per_s']:,.0f} steps/s",
        ))
    for r in results["step_vs_bare"]:
        target = f"<= {r['target']:g}x" if r["target"] else "-"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        rows.append((
            f"step / bare pass, {r['threat_model']}, {r['num_envs']} copies",
            f"{r['ratio']:.2f}x",
            target,
            met,
            f"{r['step_us']:,.0f} vs {r['bare_us']:,.0f} us; {r['episode_ends_per_step']:.1f} episode ends/step",
        ))
    for r in results["fixed_overhead"]:
        rows.append((
            f"env cost beyond the pass, {r['threat_model']}, {r['num_envs']} copies",
            f"{r['overhead_us']:,.0f} us",
            "-",
            "-",
            f"trivial one-layer victim: step {r['step_us']:,.0f} us vs pass {r['bare_us']:,.0f} us",
        ))
    for r in results["pgd"]:
        rows.append((
            f"PGD success, env vs direct ({r['victim']})",
            f"{r['env_success_rate']:.3f} vs {r['direct_success_rate']:.3f}",
            "env >= direct",
            "yes" if r["met_strength"] else "NO",
            f"{r['n_inputs']} inputs, eps {r['epsilon']:g}, {r['steps']} steps of {r['step_size']:g}",
        ))
        rows.append((
            f"PGD time, env / direct ({r['victim']})",
            f"{r['time_ratio']:.2f}x",
            f"<= {TARGETS['pgd_time']:g}x",
            "yes" if r["met_time"] else "NO",
            f"{r['env_s'] * 1e3:,.0f} vs {r['direct_s'] * 1e3:,.0f} ms ({r['agent']})",
        ))
    header = ("measure", "ratio", "target", "met", "detail")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is optional
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        return
    table = Table(title=f"Evasion-v0 benchmark ({results['machine']['cpu_count']} CPUs, torch threads {results['machine']['torch_threads']})")
    for h in header:
        table.add_column(h, justify="right" if h in ("ratio",) else "left")
    for row in rows:
        table.add_row(*row, style=None if row[3] != "NO" else "red")
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, RESULTS)
    add_threads_option(
        parser,
        help="torch intra-op threads for both sides (default: torch's own choice). With 1, the env's "
        "single-threaded numpy work and the victim's pass share one core, so step / bare compares work, "
        "not how well a small convolution parallelizes",
    )
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    quick = args.quick
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "targets": TARGETS}
    t0 = time.perf_counter()

    results["native_vs_sync"] = [bench_native_vs_sync(tm, 64, quick, args.seed) for tm in ("scores", "white_box")]
    sizes = (64, 256) if quick else (64, 256, 1024)
    results["step_vs_bare"] = [bench_step_vs_bare(tm, n, quick, args.seed) for tm in ("scores", "white_box") for n in sizes]
    results["fixed_overhead"] = [
        bench_step_vs_bare(tm, 64, quick, args.seed, victim=TrivialVictim()) for tm in ("scores", "white_box")
    ]
    victims = ("standard",) if quick else ("standard", "madry")
    results["pgd"] = [bench_pgd(v, 256, 0.2, 20, 0.25, quick) for v in victims]

    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - t0
    report(results)
    start, end = results["machine"]["loadavg_start"], results["machine"]["loadavg_end"]
    if start is not None:
        busy = start[0] > 0.75 * (os.cpu_count() or 1)  # the end value includes this run's own load
        print(
            f"load average (1 min) at start {start[0]:.2f}, at end {end[0]:.2f}"
            + (": other processes were competing for the CPUs, expect noisier ratios" if busy else "")
        )
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

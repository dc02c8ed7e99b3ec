"""Sampling throughput of Ray RLlib on ``deploy_envs/Evasion-v0``: scaling over env runners, and overhead.

Run from the repository root (needs the ``rllib`` extra)::

    python benchmarks/bench_rllib.py            # full run (a few minutes on 2 busy cores)
    python benchmarks/bench_rllib.py --quick    # smoke run

It writes ``benchmarks/results/rllib.json`` and prints three ratios, each measured in this run:

1. **scaling 2 vs 1 env runners**: env steps per second sampled by an RLlib PPO
   algorithm with 2 remote env runners over that of one with 1 remote env runner
   (``EnvRunnerGroup.foreach_env_runner(lambda r: r.sample(num_timesteps=T))``, the
   runners sampling in parallel; each steps one native batch of ``--num-envs`` copies).
   Ideal: 2.0 when there are 2 free cores.
2. **RLlib vs direct**: env steps per second of one RLlib ``SingleAgentEnvRunner``
   (in this process, exploring with the PPO RLModule) over those of stepping the same
   native batch (``gymnasium.make_vec(id, num_envs=N)``) directly with pre-drawn random
   actions. Below 1 is RLlib's overhead.
3. **where the time goes**, per vector step of the env runner: the env's own step
   (measured directly), the RLModule's forward pass on the batch (measured
   directly), and the rest (RLlib's connectors and per-copy episode bookkeeping:
   ``SingleAgentEpisode.add_env_step`` per copy, unbatching, info-to-list), as
   fractions of the runner's time per vector step.

Timing: ``time.perf_counter``; the two sides of a ratio run in alternating blocks and
the median per-repetition ratio is reported (:func:`deploy_envs.benchmarking.paired`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import deploy_envs  # noqa: F401
from deploy_envs.benchmarking import Stepper, paired
from deploy_envs.integrations import rllib as R

ENV_ID = "deploy_envs/Evasion-v0"
KWARGS = {"epsilon": 0.2, "max_queries": 20, "threat_model": "scores"}
RESULTS = Path(__file__).resolve().parent / "results" / "rllib.json"


def bench_overhead(num_envs: int, steps: int, reps: int) -> dict[str, Any]:
    """One env runner in this process vs the bare native batch; plus the module's forward pass."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    config = R.build_config(ENV_ID, env_kwargs=KWARGS, num_env_runners=0, num_envs_per_env_runner=num_envs)
    runner = SingleAgentEnvRunner(config=config)
    assert R._describe_env(runner)["native_batch"], "the env runner must step the native batch"
    vsteps = max(1, steps // num_envs)
    direct_env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **KWARGS)
    stepper = Stepper(direct_env, seed=0, stagger=KWARGS["max_queries"])
    obs = torch.as_tensor(np.stack([direct_env.single_observation_space.sample() for _ in range(num_envs)]))

    def module_pass() -> None:
        with torch.no_grad():
            runner.module.forward_exploration({Columns.OBS: obs})

    # one RLlib vector step = sample(num_timesteps=num_envs); time a block of them
    res = paired(lambda: runner.sample(num_timesteps=num_envs * vsteps, explore=True), lambda: [stepper() for _ in range(vsteps)],
                 inner_a=1, inner_b=1, reps=reps, warmup=1)
    t_module = paired(module_pass, module_pass, inner_a=vsteps, inner_b=1, reps=reps, warmup=1)["a_s"]
    runner.stop()
    direct_env.close()
    t_rllib = res["a_s"] / vsteps
    t_env = res["b_s"] / vsteps
    return {
        "num_envs": num_envs,
        "vector_steps_per_block": vsteps,
        "rllib_env_steps_per_s": num_envs / t_rllib,
        "direct_env_steps_per_s": num_envs / t_env,
        "rllib_vs_direct": 1 / res["ratio"],
        "rllib_vs_direct_range": [1 / res["ratio_max"], 1 / res["ratio_min"]],
        "seconds_per_vector_step": {"rllib_runner": t_rllib, "env_step": t_env, "module_forward": t_module},
        "fraction_of_runner_time": {
            "env_step": t_env / t_rllib,
            "module_forward": t_module / t_rllib,
            "rllib_connectors_and_episode_bookkeeping": max(0.0, 1 - (t_env + t_module) / t_rllib),
        },
    }


def bench_scaling(num_envs: int, steps: int, reps: int) -> dict[str, Any]:
    """Env steps/s sampled by 2 remote env runners vs 1 (both algorithms alive, sampled in alternating blocks)."""
    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        algos = {k: R.build_config(ENV_ID, env_kwargs=KWARGS, num_env_runners=k, num_envs_per_env_runner=num_envs).build_algo() for k in (1, 2)}
        desc = {k: R.describe_env_runners(a) for k, a in algos.items()}
        per_runner = max(num_envs, steps // 2)

        def sample(k: int) -> None:
            algos[k].env_runner_group.foreach_env_runner(lambda r: len(r.sample(num_timesteps=per_runner, explore=True)), local_env_runner=False)

        res = paired(lambda: sample(2), lambda: sample(1), inner_a=1, inner_b=1, reps=reps, warmup=1)
        for a in algos.values():
            a.stop()
    finally:
        ray.shutdown()
    rate1 = per_runner / res["b_s"]
    rate2 = 2 * per_runner / res["a_s"]
    # paired ratio = t(2 runners) / t(1 runner) for 2x the steps, so the throughput ratio is 2 / ratio
    return {
        "num_envs_per_env_runner": num_envs,
        "env_steps_per_runner_per_call": per_runner,
        "env_runners": desc,
        "env_steps_per_s_1_runner": rate1,
        "env_steps_per_s_2_runners": rate2,
        "scaling_2_vs_1": 2 / res["ratio"],
        "scaling_2_vs_1_range": [2 / res["ratio_max"], 2 / res["ratio_min"]],
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    torch.set_num_threads(1)
    steps, reps = (640, 2) if args.quick else (4096, 3)
    t0 = time.perf_counter()
    overhead = bench_overhead(args.num_envs, steps, reps)
    scaling = bench_scaling(args.num_envs, steps, reps)
    result = {
        "env": ENV_ID,
        "env_kwargs": KWARGS,
        "quick": args.quick,
        "overhead": overhead,
        "scaling": scaling,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"RLlib sampling on {ENV_ID} ({args.num_envs} native copies per env runner), load average {result['machine']['load_average_1min']:.1f}")
    print(f"  1 env runner : {scaling['env_steps_per_s_1_runner']:9.0f} env steps/s")
    print(f"  2 env runners: {scaling['env_steps_per_s_2_runners']:9.0f} env steps/s   scaling 2 vs 1: {scaling['scaling_2_vs_1']:.2f} (ideal 2.0)")
    print(f"  RLlib runner : {overhead['rllib_env_steps_per_s']:9.0f} env steps/s   direct native batch: {overhead['direct_env_steps_per_s']:.0f}   "
          f"RLlib / direct: {overhead['rllib_vs_direct']:.3f}")
    print("  runner time per vector step: " + ", ".join(f"{k} {v:.0%}" for k, v in overhead["fraction_of_runner_time"].items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

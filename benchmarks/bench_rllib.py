"""Sampling throughput of Ray RLlib on ``deploy_envs/Evasion-v0``: scaling over env runners, and overhead.

The env, its arguments and the policy network (``fcnet_hiddens``) are the shipped RLlib
recipe's, read from the ``rllib_evasion_ppo`` scenario.

Run from the repository root (needs the ``rllib`` extra)::

    python benchmarks/bench_rllib.py            # full run (a few minutes on 2 busy cores)
    python benchmarks/bench_rllib.py --quick    # smoke run

It writes ``benchmarks/results/rllib.json`` and prints these ratios, each measured in this run:

1. **RLlib vs direct at 1 and 2 env runners**: env steps per second sampled by an RLlib
   PPO algorithm with k remote env runners (the suite's
   :class:`~deploy_envs.integrations.rllib_runner.NativeBatchEnvRunner`, each stepping one
   native batch of ``--num-envs`` copies, ``EnvRunnerGroup.foreach_env_runner(lambda r:
   r.sample(num_timesteps=T))``) over k times the env steps per second of stepping the same
   native batch (``gymnasium.make_vec(id, num_envs=N)``) directly in this process with
   pre-drawn random actions. Below 1 is RLlib's overhead. Target: at least 0.6.
2. **scaling 2 vs 1 env runners**: the rate at 2 runners over the rate at 1 (each measured
   with only its own algorithm alive). Ideal 2.0 when there are 2 free cores.
3. **in one process, and where the time goes**: one batched runner and one of RLlib's
   stock ``SingleAgentEnvRunner`` (same weights) against the direct loop, and per vector
   step the env's own step, the policy (the RLModule's forward pass and the action draw,
   measured directly) and the rest (episode bookkeeping and connectors: for the stock
   runner ``SingleAgentEpisode.add_env_step`` per copy, unbatching, info-to-list and the
   connector pipelines; for the batched runner cutting the batched arrays into episodes),
   as fractions of the runner's time. ``bound_env_plus_policy_vs_direct`` is what a runner
   that did nothing but step the env and run the policy would reach, and
   ``rllib_vs_env_plus_policy`` is each runner's rate over that bound (RLlib's own overhead).
   The same two are also measured side by side: ``policy_loop_vs_direct`` times a loop that
   steps another copy of the batch with the policy's actions and no RLlib code, against the
   direct loop, and ``rllib_vs_policy_loop`` the batched runner against that loop.

4. **the garbage collector in a remote runner**: the runner freezes the objects alive after its
   construction (about half a million: Ray's, torch's, RLlib's) so full collections stop walking
   them; ``frozen_vs_not_mean_rate`` is the mean sampling rate of one remote runner with the
   collector frozen over the rate with it unfrozen, in alternating rounds, and each round reports
   its slowest ``sample()`` call over its median one.

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

RESULTS = Path(__file__).resolve().parent / "results" / "rllib.json"
# the shipped RLlib recipe: its env, env arguments and policy network (RLlib's default MLP would be [256, 256])
SCENARIO = "rllib_evasion_ppo"


def _recipe() -> tuple[str, dict[str, Any], dict[str, Any]]:
    from deploy_envs.scenarios.runner import load_scenario

    sc = load_scenario(SCENARIO)
    return sc.env, dict(sc.env_kwargs), {"model": dict(sc.train.hyperparameters.get("model") or {})}


ENV_ID, KWARGS, HYPER = _recipe()


def bench_overhead(num_envs: int, steps: int, reps: int) -> dict[str, Any]:
    """One env runner in this process vs the bare native batch: the suite's batched runner and RLlib's stock one."""
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from deploy_envs.integrations.rllib_runner import NativeBatchEnvRunner

    config = R.build_config(ENV_ID, env_kwargs=KWARGS, num_env_runners=0, num_envs_per_env_runner=num_envs, hyperparameters=HYPER)
    assert config.env_runner_cls is NativeBatchEnvRunner, "build_config must select the batched env runner"
    batched = NativeBatchEnvRunner(config=config)
    assert batched.fast_path_reason() is None, batched.fast_path_reason()
    stock = SingleAgentEnvRunner(config=config.copy(copy_frozen=False).env_runners(env_runner_cls=SingleAgentEnvRunner))
    stock.module.load_state_dict(batched.module.state_dict())  # the same policy on both
    assert R._describe_env(stock)["native_batch"], "the env runner must step the native batch"
    vsteps = max(1, steps // num_envs)
    direct_env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **KWARGS)
    stepper = Stepper(direct_env, seed=0, stagger=KWARGS["max_queries"])
    obs = np.stack([direct_env.single_observation_space.sample() for _ in range(num_envs)])

    def direct() -> None:
        for _ in range(vsteps):
            stepper()

    # one RLlib vector step = sample(num_timesteps=num_envs); time a block of them
    res_batched = paired(lambda: batched.sample(num_timesteps=num_envs * vsteps, explore=True), direct, inner_a=1, inner_b=1, reps=reps, warmup=1)
    res_stock = paired(lambda: stock.sample(num_timesteps=num_envs * vsteps, explore=True), direct, inner_a=1, inner_b=1, reps=reps, warmup=1)
    # the policy's share: the module's forward pass and the action draw (the batched runner's own call, in the
    # eval mode the runner sets once per sample() call)
    training = batched.module.training
    batched.module.eval()
    t_policy = paired(lambda: batched._actions(obs, True, 0), lambda: batched._actions(obs, True, 0), inner_a=vsteps, inner_b=1, reps=reps, warmup=1)["a_s"]
    # a loop with no RLlib code at all: step another copy of the batch with the same policy's actions
    loop_env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **KWARGS)
    loop_obs = [np.asarray(loop_env.reset(seed=1)[0], dtype=np.float32)]

    def policy_loop() -> None:
        o = loop_obs[0]
        for _ in range(vsteps):
            o = np.asarray(loop_env.step(batched._actions(o, True, 0)[1])[0], dtype=np.float32)
        loop_obs[0] = o

    res_loop = paired(policy_loop, direct, inner_a=1, inner_b=1, reps=reps, warmup=1)
    batched.module.train(training)
    res_vs_loop = paired(lambda: batched.sample(num_timesteps=num_envs * vsteps, explore=True), policy_loop, inner_a=1, inner_b=1, reps=reps, warmup=1)
    batched.stop()
    stock.stop()
    direct_env.close()
    loop_env.close()
    out: dict[str, Any] = {"num_envs": num_envs, "vector_steps_per_block": vsteps}
    for name, res in (("batched_runner", res_batched), ("stock_runner", res_stock)):
        t_runner, t_env = res["a_s"] / vsteps, res["b_s"] / vsteps
        out[name] = {
            "setting": f"{name.replace('_', ' ')}, in this process",
            "rllib_env_steps_per_s": num_envs / t_runner,
            "direct_env_steps_per_s": num_envs / t_env,
            "rllib_vs_direct": 1 / res["ratio"],
            "rllib_vs_direct_range": [1 / res["ratio_max"], 1 / res["ratio_min"]],
            "seconds_per_vector_step": {"rllib_runner": t_runner, "env_step": t_env, "policy_forward_and_action_draw": t_policy},
            "fraction_of_runner_time": {
                "env_step": t_env / t_runner,
                "policy_forward_and_action_draw": t_policy / t_runner,
                "episode_bookkeeping_and_connectors": max(0.0, 1 - (t_env + t_policy) / t_runner),
            },
        }
    # the best a runner can do: the env step plus the policy, nothing else
    t_env = res_batched["b_s"] / vsteps
    out["bound_env_plus_policy_vs_direct"] = t_env / (t_env + t_policy)
    for name in ("batched_runner", "stock_runner"):
        out[name]["rllib_vs_env_plus_policy"] = out[name]["rllib_vs_direct"] / out["bound_env_plus_policy_vs_direct"]
    # measured rather than summed: the loop that steps with the policy and nothing else, against direct stepping,
    # and the batched runner against that loop (RLlib's own overhead, measured side by side)
    out["policy_loop"] = {
        "setting": "env step plus policy, no RLlib, in this process",
        "policy_loop_vs_direct": 1 / res_loop["ratio"], "policy_loop_vs_direct_range": [1 / res_loop["ratio_max"], 1 / res_loop["ratio_min"]],
        "rllib_vs_policy_loop": 1 / res_vs_loop["ratio"], "rllib_vs_policy_loop_range": [1 / res_vs_loop["ratio_max"], 1 / res_vs_loop["ratio_min"]],
    }
    return out


def bench_scaling(num_envs: int, steps: int, reps: int) -> dict[str, Any]:
    """Env steps/s sampled by 1 and 2 remote env runners (the batched runner), each against stepping the native batch directly.

    The direct side steps one native batch in this process (one thread) while the runners
    wait; RLlib at k runners is compared with k times that rate (k copies of the direct
    loop on k free cores), so 1.0 means no overhead at all. One algorithm is alive at a
    time: an idle algorithm's actors still take CPU time from the other on a small machine.
    The 2-vs-1 scaling is the ratio of the two measured rates.
    """
    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    direct_env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **KWARGS)
    stepper = Stepper(direct_env, seed=0, stagger=KWARGS["max_queries"])
    per_runner = max(num_envs, steps // 2)
    vsteps = per_runner // num_envs

    def direct() -> None:
        for _ in range(vsteps):
            stepper()

    desc, rows = {}, []
    try:
        for k in (1, 2):
            algo = R.build_config(ENV_ID, env_kwargs=KWARGS, num_env_runners=k, num_envs_per_env_runner=num_envs, hyperparameters=HYPER).build_algo()
            desc[k] = R.describe_env_runners(algo)

            def sample(algo=algo) -> None:
                algo.env_runner_group.foreach_env_runner(lambda r: len(r.sample(num_timesteps=per_runner, explore=True)), local_env_runner=False)

            r = paired(sample, direct, inner_a=1, inner_b=1, reps=reps, warmup=1)
            algo.stop()
            direct_rate = vsteps * num_envs / r["b_s"]
            rate = k * per_runner / r["a_s"]
            # paired ratio = t(k runners, k * per_runner steps) / t(direct, per_runner steps): throughput ratio k-normalised
            rows.append({"setting": f"{k} remote env runner{'s' if k > 1 else ''}", "env_runners_count": k, "direct_env_steps_per_s": direct_rate,
                         "rllib_env_steps_per_s": rate, "rllib_vs_direct": rate / (k * direct_rate),
                         "rllib_vs_direct_range": [1 / r["ratio_max"], 1 / r["ratio_min"]], "reps": reps})
    finally:
        ray.shutdown()
        direct_env.close()
    rate1, rate2 = rows[0]["rllib_env_steps_per_s"], rows[1]["rllib_env_steps_per_s"]
    return {
        "num_envs_per_env_runner": num_envs,
        "env_steps_per_runner_per_call": per_runner,
        "env_runners": desc,
        "env_steps_per_s_1_runner": rate1,
        "env_steps_per_s_2_runners": rate2,
        "scaling_2_vs_1": rate2 / rate1,
        "runners_vs_direct": rows,
        "cpu_count": os.cpu_count(),
    }


def bench_gc(num_envs: int, steps: int, calls: int) -> dict[str, Any]:
    """One remote batched runner, its collector frozen after construction (as it ships) and not, in alternating rounds.

    Each round times ``calls`` single ``sample()`` calls and reports the mean rate (what a long run
    gets), the median rate (what the paired blocks above measure) and the slowest call over the
    median one (a full collection walking every object in the actor's process shows up there).
    """
    import gc

    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    algo = R.build_config(ENV_ID, env_kwargs=KWARGS, num_env_runners=1, num_envs_per_env_runner=num_envs, hyperparameters=HYPER).build_algo()
    group = algo.env_runner_group

    def sample() -> None:
        group.foreach_env_runner(lambda r: len(r.sample(num_timesteps=steps, explore=True)), local_env_runner=False)

    rows: dict[str, list[dict[str, float]]] = {"frozen": [], "not_frozen": []}
    try:
        frozen_objects = group.foreach_env_runner(lambda r: gc.get_freeze_count(), local_env_runner=False)[0]
        for _ in range(2):
            for state in ("frozen", "not_frozen"):
                if state == "frozen":
                    group.foreach_env_runner(lambda r: (gc.collect(), gc.freeze()), local_env_runner=False)
                else:
                    group.foreach_env_runner(lambda r: gc.unfreeze(), local_env_runner=False)
                for _ in range(3):
                    sample()
                times = []
                for _ in range(calls):
                    t = time.perf_counter()
                    sample()
                    times.append(time.perf_counter() - t)
                med = float(np.median(times))
                rows[state].append({"mean_env_steps_per_s": steps * calls / sum(times), "median_env_steps_per_s": steps / med,
                                    "slowest_call_over_median": max(times) / med})
    finally:
        algo.stop()
        ray.shutdown()
    mean = {k: float(np.mean([r["mean_env_steps_per_s"] for r in v])) for k, v in rows.items()}
    return {"num_envs": num_envs, "env_steps_per_call": steps, "calls_per_round": calls, "objects_frozen_at_construction": frozen_objects,
            "rounds": rows, "frozen_vs_not_mean_rate": mean["frozen"] / mean["not_frozen"]}


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
    collector = bench_gc(args.num_envs, steps // 2, 8 if args.quick else 40)
    result = {
        "env": ENV_ID,
        "env_kwargs": KWARGS,
        "recipe": {"scenario": SCENARIO, "hyperparameters": HYPER},
        "quick": args.quick,
        "overhead": overhead,
        "scaling": scaling,
        "garbage_collector": collector,
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"RLlib sampling on {ENV_ID} ({args.num_envs} native copies per env runner), load average {result['machine']['load_average_1min']:.1f}")
    print(f"  1 env runner : {scaling['env_steps_per_s_1_runner']:9.0f} env steps/s")
    print(f"  2 env runners: {scaling['env_steps_per_s_2_runners']:9.0f} env steps/s   scaling 2 vs 1: {scaling['scaling_2_vs_1']:.2f} (ideal 2.0)")
    for row in scaling["runners_vs_direct"]:
        print(f"  {row['setting']} / direct native batch x {row['env_runners_count']}: {row['rllib_vs_direct']:.3f}   (target >= 0.6)")
    for name in ("batched_runner", "stock_runner"):
        o = overhead[name]
        print(f"  {name:15s}: {o['rllib_env_steps_per_s']:9.0f} env steps/s in this process   direct native batch: {o['direct_env_steps_per_s']:.0f}   "
              f"RLlib / direct: {o['rllib_vs_direct']:.3f}   RLlib / (env step + policy): {o['rllib_vs_env_plus_policy']:.3f}")
        print("    runner time per vector step: " + ", ".join(f"{k} {v:.0%}" for k, v in o["fraction_of_runner_time"].items()))
    print(f"  env step + policy alone / direct: {overhead['bound_env_plus_policy_vs_direct']:.3f} (what a runner with no bookkeeping would reach)")
    loop = overhead["policy_loop"]
    print(f"  measured: a loop stepping with the policy and no RLlib / direct: {loop['policy_loop_vs_direct']:.3f};"
          f" batched runner / that loop: {loop['rllib_vs_policy_loop']:.3f}")
    for state, rounds in collector["rounds"].items():
        print(f"  remote runner, collector {state.replace('_', ' ')}: " + "; ".join(
            f"mean {r['mean_env_steps_per_s']:.0f} / median {r['median_env_steps_per_s']:.0f} env steps/s, slowest call {r['slowest_call_over_median']:.1f}x the median"
            for r in rounds))
    print(f"  frozen vs not, mean rate: {collector['frozen_vs_not_mean_rate']:.2f}x ({collector['objects_frozen_at_construction']:,} objects frozen)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

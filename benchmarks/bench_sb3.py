"""End to end, what users feel: SB3 PPO training wall time on the native batch vs SB3's DummyVecEnv.

Run from the repository root::

    python benchmarks/bench_sb3.py            # 4 envs, 32 copies, 16,384 steps, 3 repetitions
    python benchmarks/bench_sb3.py --quick    # 2 envs, 8,192 steps, 2 repetitions

For each env: the wall time of ``PPO("MlpPolicy", venv, n_steps=64, batch_size=512, n_epochs=4).learn(T)``
with ``venv`` = :func:`deploy_envs.core.sb3.make_sb3_vec_env` (the native batch through the SB3
adapter) and with ``venv`` = SB3's ``DummyVecEnv`` of ``gymnasium.make(id)`` single envs
(wrapped in ``Monitor`` each), the same number of copies, same seed, one torch thread on both sides.
The two sides alternate (the order flips every repetition); the ratio is DummyVecEnv's wall
time over the adapter's (above 1: training on the native batch is faster), median and range
over repetitions. PPO's own update costs the same on both sides, so this ratio is far below the
env-only native-vs-sync ratios: it is the speed-up of a whole training run.
Results go to ``benchmarks/results/sb3_training.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "sb3_training.json"
ENVS = ("deploy_envs/IslandNavigation-v0", "deploy_envs/SafeNavigation-v0", "deploy_envs/FairLending-v0", "deploy_envs/Evasion-v0")


def train_seconds(make_venv, steps: int, seed: int) -> float:
    from stable_baselines3 import PPO

    venv = make_venv()
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=512, n_epochs=4, seed=seed, verbose=0, device="cpu")
    t0 = time.perf_counter()
    model.learn(steps)
    dt = time.perf_counter() - t0
    venv.close()
    return dt


def bench(env_id: str, num_envs: int, steps: int, reps: int, seed: int = 0) -> dict:
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from deploy_envs.core.sb3 import make_sb3_vec_env

    def adapter():
        return make_sb3_vec_env(env_id, num_envs, seed=seed)

    def dummy():
        venv = DummyVecEnv([lambda: Monitor(gym.make(env_id)) for _ in range(num_envs)])
        venv.seed(seed)
        return venv

    ta, td, ratios = [], [], []
    for r in range(reps):
        if r % 2 == 0:
            a = train_seconds(adapter, steps, seed)
            d = train_seconds(dummy, steps, seed)
        else:
            d = train_seconds(dummy, steps, seed)
            a = train_seconds(adapter, steps, seed)
        ta.append(a)
        td.append(d)
        ratios.append(d / a)
    return {"env": env_id, "num_envs": num_envs, "timesteps": steps, "adapter_s": statistics.median(ta), "dummy_s": statistics.median(td),
            "wall_time_dummy_vs_adapter": statistics.median(ratios), "wall_time_dummy_vs_adapter_range": [min(ratios), max(ratios)],
            "ratios": ratios, "reps": reps}


def main() -> None:
    import torch

    import deploy_envs  # noqa: F401
    from deploy_envs.benchmarking import machine_info, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", nargs="*", default=None)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    envs = args.envs or (ENVS[:2] if args.quick else ENVS)
    steps = 8192 if args.quick else 16384
    reps = 2 if args.quick else 3
    t0 = time.perf_counter()
    results = {"machine": machine_info(), "quick": args.quick, "training": []}
    for env_id in envs:
        row = bench(env_id, args.num_envs, steps, reps)
        results["training"].append(row)
        print(f"{env_id.split('/')[1]:22s} PPO {steps} steps, {args.num_envs} copies: DummyVecEnv / adapter wall time "
              f"{row['wall_time_dummy_vs_adapter']:.2f}x ({row['dummy_s']:.1f} vs {row['adapter_s']:.1f} s; range "
              f"{row['wall_time_dummy_vs_adapter_range'][0]:.2f}-{row['wall_time_dummy_vs_adapter_range'][1]:.2f})", flush=True)
    results["machine"]["loadavg_end"] = machine_info()["loadavg"]
    results["seconds"] = time.perf_counter() - t0
    write_results(results, args.out)


if __name__ == "__main__":
    main()

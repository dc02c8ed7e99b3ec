"""The single env (``gymnasium.make(id)``): its rate against a hand-written peer, against an
earlier commit of this code, and the single view's own cost over its core's batch-1 step.

Run from the repository root::

    python benchmarks/bench_single.py                    # all three measures, 5 repetitions
    python benchmarks/bench_single.py --quick            # 3 repetitions, shorter blocks
    python benchmarks/bench_single.py --baseline REF     # compare against git REF (default: the commit in BASELINE)

Three measures, each a ratio of two sides timed in alternating blocks (the order flips every
repetition; the median of the per-repetition ratios and their range are reported):

* **peer**: steps/s of ``gymnasium.make("deploy_envs/IslandNavigation-v0")`` over steps/s of
  ``gymnasium.make("safety_gridworlds/IslandNavigation-v0")`` from the
  ``safety-gridworlds-gymnasium`` package (a hand-written single-copy Gymnasium env of the
  same world; a benchmark-only dependency, installed with ``pip install --no-deps
  safety-gridworlds-gymnasium``). Both in this process, both through ``gymnasium.make``'s
  wrappers, random valid actions, reset when an episode ends. Target >= 0.7. The peer's
  modules import ``pygame`` for rendering only; where pygame is not installed an empty
  stand-in module is put in its place (no env here renders, so none of it is called), and
  the JSON says so.
* **now vs baseline**: steps/s of the single env of every gridworld and SafeNavigation-v0
  with this checkout's code over the same with the code of git ``--baseline`` (exported with
  ``git archive`` into a temporary folder). Two versions of one package cannot share a
  process, so each side runs in its own child process that times every env in turn; the
  children alternate (baseline, now, now, baseline, ...) and each repetition's ratio comes
  from two adjacent children. Target >= 2.
* **view overhead**: per-step time of ``env.unwrapped.step`` (the single view) over the
  core's own batch-1 step (``core.step_indices`` on copy 0 with an already validated action
  row, ``core.reset_indices`` at episode ends), in this process, for every registered env
  with a single-copy Box or Discrete action space. Reported as a ratio and as microseconds
  of view cost per step; informational.

Results go to ``benchmarks/results/single.json`` with the load average at start and end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "single.json"
#: the commit before the single-view speed work, the default baseline
BASELINE = "a81a7ec"
PEER_ID = "safety_gridworlds/IslandNavigation-v0"
OURS_ID = "deploy_envs/IslandNavigation-v0"
PEER_TARGET = 0.7
BASELINE_TARGET = 2.0


def baseline_ids() -> list[str]:
    from deploy_envs.topics.gridworlds import GRIDWORLD_IDS

    return [*GRIDWORLD_IDS, "deploy_envs/SafeNavigation-v0"]


def _loadavg() -> list[float]:
    return list(os.getloadavg())


def import_peer() -> str:
    """Import the peer package (registering its envs); return how pygame was found."""
    how = "installed"
    try:
        import pygame  # noqa: F401
    except ImportError:
        sys.modules["pygame"] = types.ModuleType("pygame")  # rendering only; never called here
        how = "stand-in module (not installed; rendering is never called)"
    import safety_gridworlds_gymnasium  # noqa: F401

    return how


class SingleStepper:
    """Steps one ``gymnasium.Env`` with pre-drawn valid actions, resetting at episode ends."""

    def __init__(self, env, seed: int = 0, pool: int = 64, python_ints: bool = True) -> None:
        self.env = env
        env.action_space.seed(seed)
        acts = [env.action_space.sample() for _ in range(pool)]
        self.actions = [int(a) for a in acts] if python_ints and hasattr(env.action_space, "n") else acts
        self.i = 0
        env.reset(seed=seed)

    def __call__(self) -> None:
        _, _, term, trunc, _ = self.env.step(self.actions[self.i % len(self.actions)])
        self.i += 1
        if term or trunc:
            self.env.reset()


class CoreStepper:
    """The core's own batch-1 step: ``step_indices`` on copy 0 with validated action rows."""

    def __init__(self, core, space, seed: int = 0, pool: int = 64) -> None:
        import numpy as np
        from gymnasium.utils import seeding

        self.core = core
        space.seed(seed)
        self.actions = [core.validate_actions(np.expand_dims(np.asarray(space.sample()), 0), 1) for _ in range(pool)]
        self.idx = np.zeros(1, dtype=np.int64)
        self.i = 0
        core.rngs[0], _ = seeding.np_random(seed)
        core.reset_indices(self.idx)

    def __call__(self) -> None:
        _, _, term, trunc, _ = self.core.step_indices(self.idx, self.actions[self.i % len(self.actions)])
        self.i += 1
        if term[0] or trunc[0]:
            self.core.reset_indices(self.idx)


def seconds_per_step(stepper, seconds: float) -> float:
    """Mean seconds per call over a block of at least ``seconds`` (the clock read after 1, 2, 4, ... up to 200 calls)."""
    n, chunk = 0, 1
    t0 = time.perf_counter()
    while True:
        for _ in range(chunk):
            stepper()
        n += chunk
        chunk = min(2 * chunk, 200)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return dt / n


def paired_blocks(a, b, reps: int, seconds: float) -> dict:
    """Alternating blocks of ``a`` and ``b``; ratio = time(a) / time(b) (= rate(b) / rate(a))."""
    seconds_per_step(a, seconds / 2)  # warm-up
    seconds_per_step(b, seconds / 2)
    ta, tb, ratios = [], [], []
    for r in range(reps):
        if r % 2 == 0:
            x = seconds_per_step(a, seconds)
            y = seconds_per_step(b, seconds)
        else:
            y = seconds_per_step(b, seconds)
            x = seconds_per_step(a, seconds)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return {"a_s": statistics.median(ta), "b_s": statistics.median(tb), "ratio": statistics.median(ratios),
            "ratio_range": [min(ratios), max(ratios)], "ratios": ratios, "reps": reps}


def bench_peer(reps: int, seconds: float) -> dict:
    import gymnasium as gym

    import deploy_envs  # noqa: F401

    pygame = import_peer()
    peer, ours = gym.make(PEER_ID), gym.make(OURS_ID)
    res = paired_blocks(SingleStepper(peer), SingleStepper(ours), reps, seconds)
    ours.close()  # the peer's close() needs a renderer it only builds with a render_mode: left open
    return {"peer": PEER_ID, "ours": OURS_ID, "peer_package": "safety-gridworlds-gymnasium " + _version("safety-gridworlds-gymnasium"),
            "pygame": pygame, "peer_steps_per_s": 1 / res["a_s"], "ours_steps_per_s": 1 / res["b_s"],
            "ratio": res["ratio"], "ratio_range": res["ratio_range"], "ratios": res["ratios"], "reps": reps, "target": PEER_TARGET}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def bench_overhead(reps: int, seconds: float) -> list[dict]:
    import gymnasium as gym
    from gymnasium import spaces

    import deploy_envs  # noqa: F401
    from deploy_envs.core.views import SingleEnv

    rows = []
    for env_id in sorted(k for k in gym.registry if k.startswith("deploy_envs/")):
        spec = gym.spec(env_id)
        try:
            env = gym.make(env_id)
        except Exception as err:  # an env that needs an optional extra
            rows.append({"env": env_id, "error": f"{type(err).__name__}: {err}"})
            continue
        view = env.unwrapped
        if not isinstance(view, SingleEnv) or not isinstance(view.action_space, (spaces.Box, spaces.Discrete)):
            env.close()
            continue
        twin = gym.make(env_id).unwrapped  # a second copy for the core side, same kwargs
        del spec
        try:
            res = paired_blocks(CoreStepper(twin.core, twin.action_space), SingleStepper(view, python_ints=True), reps, seconds)
        except Exception as err:
            rows.append({"env": env_id, "error": f"{type(err).__name__}: {err}"})
            continue
        finally:
            env.close()
            twin.close()
        rows.append({"env": env_id, "core_us": 1e6 * res["a_s"], "view_us": 1e6 * res["b_s"],
                     "view_over_core": 1 / res["ratio"], "view_cost_us": 1e6 * (res["b_s"] - res["a_s"]),
                     "ratio_range": [1 / x for x in reversed(res["ratio_range"])], "reps": reps})
    return rows


# ----------------------------------------------------------------- now vs baseline
def child(ids: list[str], seconds: float) -> None:
    """Time each env's single view for one block; print {id: steps/s} as JSON."""
    import gymnasium as gym

    import deploy_envs  # noqa: F401

    out = {}
    for env_id in ids:
        env = gym.make(env_id)
        step = SingleStepper(env)
        seconds_per_step(step, seconds / 2)  # warm-up
        out[env_id] = 1 / seconds_per_step(step, seconds)
        env.close()
    print(json.dumps(out))


def export(ref: str, into: Path) -> str:
    """``git archive`` of ``ref`` unpacked into ``into``; return the full commit id."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "deploy_envs"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def run_child(pythonpath: Path, ids: list[str], seconds: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--seconds", str(seconds), "--ids", *ids]
    res = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=str(pythonpath))
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_baseline(ref: str, reps: int, seconds: float) -> dict:
    ids = baseline_ids()
    with tempfile.TemporaryDirectory() as tmp:
        commit = export(ref, Path(tmp))
        old, new = {k: [] for k in ids}, {k: [] for k in ids}
        for r in range(reps):
            order = [(Path(tmp), old), (ROOT, new)] if r % 2 == 0 else [(ROOT, new), (Path(tmp), old)]
            for path, store in order:
                for k, v in run_child(path, ids, seconds).items():
                    store[k].append(v)
            print(f"  baseline repetition {r + 1}/{reps} done", flush=True)
    rows = []
    for k in ids:
        ratios = [n / o for n, o in zip(new[k], old[k])]
        rows.append({"env": k, "now_steps_per_s": statistics.median(new[k]), "baseline_steps_per_s": statistics.median(old[k]),
                     "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)], "ratios": ratios})
    return {"baseline": ref, "baseline_commit": commit, "reps": reps, "target": BASELINE_TARGET, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions of shorter blocks: a smoke run")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per ratio (default 5, 3 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per timed block")
    parser.add_argument("--baseline", default=BASELINE, help=f"git ref of the code to compare against (default {BASELINE})")
    parser.add_argument("--skip", nargs="*", default=[], choices=["peer", "baseline", "overhead"], help="measures to leave out")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = args.seconds or (0.15 if args.quick else 0.4)
    if args.child:
        child(args.ids, seconds)
        return
    from deploy_envs.benchmarking import machine_info, write_results

    reps = args.reps or (3 if args.quick else 5)
    t0 = time.perf_counter()
    results: dict = {"machine": machine_info(), "reps": reps, "seconds_per_block": seconds}
    if "peer" not in args.skip:
        p = bench_peer(reps, seconds)
        results["peer"] = p
        print(f"IslandNavigation single env, ours / peer: {p['ratio']:.2f}x ({p['ours_steps_per_s']:,.0f} vs {p['peer_steps_per_s']:,.0f} steps/s; "
              f"range {p['ratio_range'][0]:.2f}-{p['ratio_range'][1]:.2f}; target >= {PEER_TARGET})")
    if "baseline" not in args.skip:
        b = bench_baseline(args.baseline, reps, seconds)
        results["baseline"] = b
        print(f"single env, now / {args.baseline} ({b['baseline_commit'][:10]}), target >= {BASELINE_TARGET}:")
        for r in b["rows"]:
            print(f"  {r['env'].split('/')[1]:26s} {r['ratio']:5.2f}x  ({r['now_steps_per_s']:8,.0f} vs {r['baseline_steps_per_s']:8,.0f} steps/s; "
                  f"range {r['ratio_range'][0]:.2f}-{r['ratio_range'][1]:.2f})")
    if "overhead" not in args.skip:
        rows = bench_overhead(max(3, reps - 2), seconds / 2)
        results["overhead"] = rows
        print("single view / core batch-1 step:")
        for r in rows:
            if "error" in r:
                print(f"  {r['env'].split('/')[1]:26s} not measured: {r['error'][:80]}")
            else:
                print(f"  {r['env'].split('/')[1]:26s} {r['view_over_core']:5.2f}x  (view {r['view_us']:7.1f} us, core {r['core_us']:7.1f} us, view cost {r['view_cost_us']:6.1f} us)")
    results["loadavg_end"] = _loadavg()
    results["seconds"] = time.perf_counter() - t0
    write_results(results, args.out)


if __name__ == "__main__":
    main()

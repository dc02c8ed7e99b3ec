"""``deploy_envs.benchmarking``: the shared command line, the stepper and the paired timing of the benchmark scripts."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import deploy_envs  # noqa: F401
from deploy_envs.benchmarking import Stepper, add_threads_option, bench_parser, paired


def test_bench_parser_gives_every_script_the_same_options(tmp_path):
    doc = "What the script measures.\n\nDetails that stay out of --help's description."
    parser = bench_parser(doc, tmp_path / "r.json")
    assert parser.description == "What the script measures."
    args = parser.parse_args([])
    assert (args.quick, args.seed, args.out) == (False, 0, tmp_path / "r.json")
    args = parser.parse_args(["--quick", "--seed", "3", "--out", "x.json"])
    assert (args.quick, args.seed, args.out) == (True, 3, Path("x.json"))
    no_seed = bench_parser(doc, tmp_path / "r.json", seed=False)
    with pytest.raises(SystemExit):
        no_seed.parse_args(["--seed", "1"])
    add_threads_option(parser, default=1)
    assert parser.parse_args([]).threads == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "0"])


def test_stepper_counts_the_timed_steps_and_episode_ends():
    env = gym.make_vec("deploy_envs/Evasion-v0", num_envs=8, max_queries=5)
    step = Stepper(env, seed=0, stagger=5, count_ends=True)
    assert (step.steps, step.ends) == (0, 0)  # the warm-up is not counted
    ends = 0
    for _ in range(20):
        _, _, term, trunc, _ = env.step(step.actions[step.i % len(step.actions)])
        step.i += 1
        ends += int((term | trunc).sum())
    assert ends > 0
    for _ in range(20):
        step()
    assert step.steps == 20 and step.ends > 0
    quiet = Stepper(env, seed=0)
    quiet()
    assert (quiet.steps, quiet.ends) == (0, 0)  # counting is off unless asked for
    env.close()


def test_paired_ratio_is_the_slower_side_over_the_faster():
    a_data, b_data = np.random.default_rng(0).random(200_000), np.random.default_rng(1).random(2_000)
    res = paired(lambda: np.sort(a_data), lambda: np.sort(b_data), inner_a=2, inner_b=2, reps=3, warmup=1)
    assert res["ratio"] > 1 and res["ratio_min"] <= res["ratio"] <= res["ratio_max"]
    assert res["a_s"] > res["b_s"] > 0

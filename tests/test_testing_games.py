"""The game checks of deploy_envs.testing: they pass on sound games and fail, naming the step and agent, on broken ones."""
from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from deploy_envs import testing
from deploy_envs.core.batched import BatchedCore, validate_batch
from deploy_envs.core.views import ParallelGameView

ACTION_SPACES = {
    "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "discrete": spaces.Discrete(3, start=1),
    "multi_discrete": spaces.MultiDiscrete([2, 3]),
    "multi_binary": spaces.MultiBinary(4),
}


class ToyGame(ParallelEnv):
    """Four agents (one per action-space kind) nudge a shared 3-vector; episodes last ``rounds`` steps.

    ``noisy``: the step noise comes from an unseeded generator (not reproducible);
    ``ignore_seed``: ``reset(seed=...)`` reseeds with 0 whatever the seed (every seed gives the same game);
    ``float64_obs``: the observation space breaks the float32 convention.
    """

    metadata: ClassVar[dict] = {"name": "toy_game_v0", "render_modes": []}

    def __init__(self, rounds: int = 4, noisy: bool = False, ignore_seed: bool = False, float64_obs: bool = False) -> None:
        self.rounds, self.noisy, self.ignore_seed = rounds, noisy, ignore_seed
        self.possible_agents = list(ACTION_SPACES)
        self.agents: list[str] = []
        self._obs_space = spaces.Box(-10.0, 10.0, (3,), np.float64 if float64_obs else np.float32)
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return ACTION_SPACES[agent]

    def _obs(self):
        return {a: self.x.astype(self._obs_space.dtype) for a in self.possible_agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(0 if self.ignore_seed else seed)
        self.x, self.t = self.rng.uniform(-1, 1, 3), 0
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {"t": 0} for a in self.possible_agents}

    def step(self, actions):
        push = sum(float(np.sum(actions[a])) for a in self.possible_agents)
        noise = (np.random.default_rng() if self.noisy else self.rng).normal(0.0, 0.1, 3)
        self.x = np.clip(0.9 * self.x + 0.01 * push + noise, -10, 10)
        self.t += 1
        done = self.t >= self.rounds
        obs = self._obs()
        if done:
            self.agents = []
        rew = {a: float(self.x[0]) for a in self.possible_agents}
        flags = {a: done for a in self.possible_agents}
        return obs, rew, flags, {a: False for a in self.possible_agents}, {a: {"t": self.t} for a in self.possible_agents}


# ------------------------------------------------------------ random_joint_actions
def test_random_joint_actions_sample_every_space_kind_reproducibly():
    env = ToyGame()
    a, b, c = (testing.random_joint_actions(env, s) for s in (3, 3, 4))
    draws_a, draws_b, draws_c = ([next(g) for _ in range(20)] for g in (a, b, c))
    for joint in draws_a:
        assert set(joint) == set(ACTION_SPACES)
        for agent, act in joint.items():
            assert ACTION_SPACES[agent].contains(act), (agent, act)
    assert all(gym.utils.env_checker.data_equivalence(x, y) for x, y in zip(draws_a, draws_b))
    assert not all(gym.utils.env_checker.data_equivalence(x, y) for x, y in zip(draws_a, draws_c))
    # the discrete draws cover their range (start=1: values 1, 2, 3) and are not stuck
    assert {int(j["discrete"]) for j in draws_a} == {1, 2, 3}
    assert len({tuple(j["multi_binary"]) for j in draws_a}) > 5


def test_random_joint_actions_unbounded_integer_nested_and_unsupported_spaces():
    many = {
        "half_open": spaces.Box(np.array([0.0, -np.inf], np.float32), np.array([np.inf, 5.0], np.float32), dtype=np.float32),
        "free": spaces.Box(-np.inf, np.inf, (3,), np.float32),
        "ints": spaces.Box(-2, 2, (4,), np.int64),
        "nested": spaces.Dict({"d": spaces.Discrete(2), "t": spaces.Tuple((spaces.MultiBinary(2), spaces.Discrete(5, start=-2)))}),
    }

    class Stub:
        possible_agents, agents = list(many), []

        def action_space(self, agent):
            return many[agent]

    for joint in (next(testing.random_joint_actions(Stub(), s)) for s in range(30)):
        for agent, act in joint.items():
            assert many[agent].contains(act), (agent, act)
    Stub.possible_agents = ["text"]
    many["text"] = spaces.Text(5)
    with pytest.raises(TypeError, match="Text"):
        next(testing.random_joint_actions(Stub(), 0))


# ------------------------------------------------------------ game_rollout
def test_game_rollout_records_and_resets_at_episode_ends():
    env = ToyGame(rounds=3)
    traj = testing.game_rollout(env, seed=1, steps=7, action_seed=2)
    assert [r[0] for r in traj] == ["reset", "step", "step", "step", "reset", "step", "step", "step", "reset", "step"]
    assert all(len(r) == (3 if r[0] == "reset" else 6) for r in traj)
    assert traj[3][3]["box"] and not traj[2][3]["box"]  # terminations at the end of the episode only
    one = testing.game_rollout(env, seed=1, steps=None, action_seed=2)
    assert [r[0] for r in one] == ["reset", "step", "step", "step"] and env.agents == []
    assert gym.utils.env_checker.data_equivalence(one, traj[:4])  # same seeds, same records
    testing.check_game_observations(env, traj)


def test_check_game_observations_names_step_and_agent():
    env = ToyGame()
    traj = testing.game_rollout(env, seed=0, steps=3, action_seed=0)
    traj[2][1]["discrete"] = np.full(3, 99.0, np.float32)
    with pytest.raises(AssertionError, match=r"step 1: observation of agent 'discrete' outside"):
        testing.check_game_observations(env, traj)


# ------------------------------------------------------------ check_game_api
def test_check_game_api_passes_on_toy_and_real_games():
    env = testing.check_game_api(ToyGame, {"rounds": 5}, num_cycles=20)
    assert isinstance(env, ToyGame)
    testing.check_game_api("deploy_envs/LendingMarket-v0", {"population_size": 200, "rounds": 2}, num_cycles=5)


def test_check_game_api_fails_on_float64_observations():
    with pytest.raises(AssertionError, match="dtype float64"):
        testing.check_game_api(ToyGame, {"float64_obs": True}, num_cycles=5)


# ------------------------------------------------------------ check_game_determinism
def test_check_game_determinism_passes_on_a_seeded_game():
    same, other = testing.check_game_determinism(ToyGame, {"rounds": 4}, seed=1, steps=10, action_seed=2, min_episodes=3)
    assert len(same) == len(other) == 1 + 10 + 2
    with pytest.raises(AssertionError, match="min_episodes=4"):
        testing.check_game_determinism(ToyGame, {"rounds": 4}, seed=1, steps=10, min_episodes=4)


def test_check_game_determinism_fails_on_a_non_deterministic_game():
    # the reset is seeded, the step noise is not: the first step already differs
    with pytest.raises(AssertionError, match=r"ToyGame seed 1, step 0: observations of agent 'box' differ"):
        testing.check_game_determinism(ToyGame, {"noisy": True}, seed=1, steps=10)


def test_check_game_determinism_fails_on_a_game_that_ignores_its_seed():
    with pytest.raises(AssertionError, match="seeds 1 and 2 gave the same observations"):
        testing.check_game_determinism(ToyGame, {"ignore_seed": True}, seed=1, steps=10)


def test_check_game_determinism_on_a_registered_game_by_id():
    same, _ = testing.check_game_determinism("deploy_envs/LendingMarket-v0", {"population_size": 200, "rounds": 2}, steps=5, min_episodes=3)
    assert [r[0] for r in same].count("reset") == 3


# ------------------------------------------------------------ check_game_batch_matches_single
class ToyCore(BatchedCore):
    """One agent adds its action and per-copy noise to a scalar for ``rounds`` steps.

    ``leak``: every copy's noise is drawn from copy 0's generator, so the batch no longer
    matches single games (the mistake the check is there to catch).
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, num_envs: int = 1, render_mode=None, rounds: int = 3, leak: bool = False) -> None:
        super().__init__(num_envs, render_mode)
        self.rounds, self.leak = rounds, leak
        self.observation_spaces = {"mover": spaces.Box(-100.0, 100.0, (1,), np.float32)}
        self.action_spaces = {"mover": spaces.Box(-1.0, 1.0, (1,), np.float32)}
        self.x, self.t = np.zeros(num_envs), np.zeros(num_envs, np.int64)

    def _out(self, idx):
        return {"mover": self.x[idx, None].astype(np.float32)}

    def reset_indices(self, idx, options=None):
        for i in idx:
            self.x[i] = self.rngs[i].uniform(-1, 1)
        self.t[idx] = 0
        return self._out(idx), {"mover": {"x": self.x[idx].copy()}}

    def step_indices(self, idx, actions):
        noise = self.rngs[0].normal(size=len(idx)) if self.leak else np.array([self.rngs[i].normal() for i in idx])
        self.x[idx] += actions["mover"][:, 0] + noise
        self.t[idx] += 1
        done = self.t[idx] >= self.rounds
        return self._out(idx), {"mover": self.x[idx].copy()}, done, np.zeros(len(idx), bool), {"mover": {"x": self.x[idx].copy()}}

    def validate_actions(self, actions, batch):
        return {"mover": validate_batch(self.action_spaces["mover"], actions["mover"], batch, "mover")}

    def state_of(self, idx):
        return self._out(idx)["mover"]


class ToyView(ParallelGameView):
    core_class = ToyCore
    metadata: ClassVar[dict] = {"name": "toy_batched_v0", "render_modes": []}


def test_check_game_batch_matches_single_passes_and_counts_episode_ends():
    assert testing.check_game_batch_matches_single(ToyView, {"rounds": 3}, num_envs=3, seed=4, steps=7) == 2 * 3
    edited = []

    def force_copy_0(actions, core):
        assert isinstance(core, ToyCore) and actions["mover"].shape == (3, 1)
        actions["mover"][0] = 1.0
        edited.append(True)

    testing.check_game_batch_matches_single(ToyView, {"rounds": 3}, num_envs=3, steps=2, edit_actions=force_copy_0)
    assert len(edited) == 2
    assert testing.check_game_batch_matches_single("deploy_envs/LendingMarket-v0", {"population_size": 200, "rounds": 2}, num_envs=2, steps=3) == 2


def test_check_game_batch_matches_single_fails_when_copies_share_randomness():
    # copy 0 draws first from its own generator in both cases; copy 1 is the first to differ
    with pytest.raises(AssertionError, match=r"ToyView step 0, agent 'mover', copy 1: observation differs"):
        testing.check_game_batch_matches_single(ToyView, {"leak": True}, num_envs=3, steps=4)


def test_check_game_batch_matches_single_tolerances():
    class Drift(ToyCore):  # the batch adds 1e-4 to every reward: "batched kernels" off in the last bits
        def step_indices(self, idx, actions):
            obs, rew, term, trunc, info = super().step_indices(idx, actions)
            return obs, {"mover": rew["mover"] + (1e-4 if self.num_envs > 1 else 0.0)}, term, trunc, info

    class DriftView(ToyView):
        core_class = Drift

    with pytest.raises(AssertionError, match=r"step 0, agent 'mover', copy 0: reward differs \(largest gap 0.0001\)"):
        testing.check_game_batch_matches_single(DriftView, {}, num_envs=2, steps=2)
    testing.check_game_batch_matches_single(DriftView, {}, num_envs=2, steps=2, reward_atol=1e-3)


def test_check_game_batch_matches_single_wants_a_batched_game():
    with pytest.raises(TypeError, match="ParallelGameView"):
        testing.check_game_batch_matches_single(ToyGame, {}, num_envs=2, steps=1)

"""ARCHITECTURE.md's worked examples run as written: an env added as one module plus one
registration line, then checked, given a baseline and a trained agent."""
from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import pytest

from deploy_envs.core import registration
from deploy_envs.core.agents import BASELINES

DOC = (Path(__file__).resolve().parents[1] / "ARCHITECTURE.md").read_text()
BLOCKS = [b.split("```", 1)[0] for b in DOC.split("```python\n")[1:]]
ENV_ID = "deploy_envs/CoinGuess-v0"


@pytest.fixture
def example_env(tmp_path, monkeypatch):
    """The doc's env module written where Python finds it, registered by the doc's own line; unregistered after."""
    module, registration_line = BLOCKS[0], BLOCKS[1]
    (tmp_path / "coin_guess_example.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "deploy_envs.topics.bandits.coin_guess:CoinGuessCore" in registration_line
    line = registration_line.replace("deploy_envs.topics.bandits.coin_guess:CoinGuessCore", "coin_guess_example:CoinGuessCore")
    exec(compile(line, "ARCHITECTURE.md", "exec"), {"register_env": registration.register_env})
    monkeypatch.setenv("DEPLOY_ENVS_AGENTS", str(tmp_path / "agents"))
    yield ENV_ID
    gym.registry.pop(ENV_ID, None)
    registration.ENV_CATALOG.pop(ENV_ID, None)
    for name in ("CoinGuessEnv", "CoinGuessVectorEnv"):
        registration._VIEW_CORES.pop(name, None)
        registration._VIEWS.pop(name, None)
    BASELINES.pop("always_heads", None)
    sys.modules.pop("coin_guess_example", None)


def test_the_doc_has_its_examples():
    assert len(BLOCKS) == 8
    assert "class CoinGuessCore(BatchedCore)" in BLOCKS[0] and "register_env(" in BLOCKS[1]


def test_a_new_env_is_one_module_and_one_registration_line(example_env):
    env = gym.make(example_env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1,) and type(env.unwrapped).__name__ == "CoinGuessEnv"
    venv = gym.make_vec(example_env, num_envs=4)
    assert type(venv).__name__ == "CoinGuessVectorEnv"
    assert example_env in registration.ENV_CATALOG
    exec(compile(BLOCKS[2], "ARCHITECTURE.md", "exec"), {})  # the conformance checks of the doc


def test_the_doc_baseline_and_agent_examples_run(example_env):
    exec(compile(BLOCKS[3], "ARCHITECTURE.md", "exec"), {})  # asserts its own expected return
    ns: dict = {}
    exec(compile(BLOCKS[4], "ARCHITECTURE.md", "exec"), ns)
    assert ns["card"].env_id == example_env and ns["card"].evaluations[0]["episodes"] == 16
    assert (Path(ns["agents_dir"]()) / "coin-guess-ppo" / "model.zip").exists()


def test_a_new_game_is_one_module_and_one_registration_line(tmp_path, monkeypatch):
    """The doc's game: a GameCore module, registered by the doc's own line, then made and checked as written."""
    module, registration_line, usage = BLOCKS[5], BLOCKS[6], BLOCKS[7]
    (tmp_path / "pennies_example.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "deploy_envs.topics.bandits.pennies:MatchingPenniesCore" in registration_line
    line = registration_line.replace("deploy_envs.topics.bandits.pennies:MatchingPenniesCore", "pennies_example:MatchingPenniesCore")
    exec(compile(line, "ARCHITECTURE.md", "exec"), {"register_game": registration.register_game})
    try:
        exec(compile(usage, "ARCHITECTURE.md", "exec"), {})
        game = registration.make_game("deploy_envs/MatchingPennies-v0")
        assert type(game).__name__ == "MatchingPenniesParallelEnv" and game.metadata["name"] == "matching_pennies_v0"
    finally:
        registration.GAME_CATALOG.pop("deploy_envs/MatchingPennies-v0", None)
        registration._VIEW_CORES.pop("MatchingPenniesParallelEnv", None)
        registration._VIEWS.pop("MatchingPenniesParallelEnv", None)
        sys.modules.pop("pennies_example", None)

"""Docs match the code: every registered env and game is in the README table, every env documents itself."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("env_id", sorted([*ENV_CATALOG, *GAME_CATALOG]))
def test_every_registered_env_is_in_the_readme_table(env_id):
    assert f"| `{env_id}` |" in README, f"{env_id} is registered but missing from the README's environment table"


@pytest.mark.parametrize("env_id", sorted(ENV_CATALOG))
def test_every_env_has_a_gymnasium_style_docstring(env_id):
    env = gym.make(env_id, **ENV_CATALOG[env_id].test_kwargs)
    doc = type(env.unwrapped).__doc__ or type(env.unwrapped.core).__doc__ or ""
    for section in ("Description", "Action Space", "Observation Space", "Rewards", "Episode End", "Arguments"):
        assert section in doc, f"{env_id}: docstring lacks the '{section}' section"


def test_readme_conformance_example_runs():
    """The README's 'Checking your own env or game' snippet runs as written."""
    section = README.split("## Checking your own env or game", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert "testing.check_game_determinism" in code
    exec(compile(code, "README.md", "exec"), {})

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


def _blocks(text: str, lang: str) -> list[str]:
    return [b.split("```", 1)[0] for b in text.split(f"```{lang}\n")[1:]]


def test_readme_first_python_snippet_runs_as_written():
    """The README's first Python example, copied exactly (imports included), runs."""
    code = _blocks(README, "python")[0]
    assert "import numpy as np" in code and "make_sb3_vec_env" in code
    exec(compile(code, "README.md", "exec"), {})


def test_readme_setup_commands_are_what_ci_runs():
    """The Quick start's three commands appear in .ci/run as written (the checkout as `"$ROOT"`)."""
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in _blocks(quick, "bash")]
    assert len(commands) == 3
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    for cmd in commands:
        assert cmd.replace("pip install . ", 'pip install "$ROOT" ') in ci, f"README command not run by CI: {cmd}"
    assert "deploy-envs run quickstart" in commands[0]


def test_readme_command_table_names_real_commands():
    """Every `deploy-envs X` in the command table is a command of the CLI (typer refuses unknown ones)."""
    from typer.testing import CliRunner

    from deploy_envs.cli import app

    table = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    names = {line.split("`deploy-envs ", 1)[1].split()[0].rstrip("`") for line in table.splitlines() if line.startswith("| `deploy-envs ")}
    assert {"list", "evaluate", "run", "train", "serve", "zoo"} <= names
    for name in names:
        r = CliRunner().invoke(app, [name, "--help"])
        assert r.exit_code == 0, f"`deploy-envs {name}` in the README is not a command: {r.output}"

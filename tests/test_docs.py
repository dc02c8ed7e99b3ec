"""Docs match the code: every registered env and game is in the docs' environment table, every env documents itself,
and the snippets and commands of the README and the docs pages run as written."""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ENVIRONMENTS_PAGE = (ROOT / "docs" / "envs" / "index.md").read_text()
CHECKING_PAGE = (ROOT / "docs" / "checking.md").read_text()
CLI_PAGE = (ROOT / "docs" / "cli.md").read_text()


@pytest.mark.parametrize("env_id", sorted([*ENV_CATALOG, *GAME_CATALOG]))
def test_every_registered_env_is_in_the_environments_table(env_id):
    assert f"| `{env_id}` |" in ENVIRONMENTS_PAGE, f"{env_id} is registered but missing from the environment table of docs/envs/index.md"


@pytest.mark.parametrize("env_id", sorted(ENV_CATALOG))
def test_every_env_has_a_gymnasium_style_docstring(env_id):
    env = gym.make(env_id, **ENV_CATALOG[env_id].test_kwargs)
    doc = type(env.unwrapped).__doc__ or type(env.unwrapped.core).__doc__ or ""
    for section in ("Description", "Action Space", "Observation Space", "Rewards", "Episode End", "Arguments"):
        assert section in doc, f"{env_id}: docstring lacks the '{section}' section"


def test_checking_page_conformance_example_runs():
    """The 'Checking your own env or game' page's snippet runs as written."""
    section = CHECKING_PAGE.split("# Checking your own env or game", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert "testing.check_game_determinism" in code
    exec(compile(code, "docs/checking.md", "exec"), {})


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


def test_cli_page_command_table_names_real_commands():
    """Every `deploy-envs X` in the command table of the Command line page is a command of the CLI (typer refuses unknown ones)."""
    from typer.testing import CliRunner

    from deploy_envs.cli import app

    table = CLI_PAGE.split("# Command line", 1)[1].split("\n## ", 1)[0]
    names = {line.split("`deploy-envs ", 1)[1].split()[0].rstrip("`") for line in table.splitlines() if line.startswith("| `deploy-envs ")}
    assert {"list", "evaluate", "run", "train", "serve", "zoo"} <= names
    for name in names:
        r = CliRunner().invoke(app, [name, "--help"])
        assert r.exit_code == 0, f"`deploy-envs {name}` in docs/cli.md is not a command: {r.output}"


def test_readme_links_to_docs_pages_that_exist():
    """The README's links to the docs pages (and other files of the repository) point at files that exist."""
    import re

    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", README) if not re.match(r"^[a-z]+://", t)]
    assert {"docs/envs/index.md", "docs/scenarios.md", "docs/cli.md", "docs/checking.md"} <= set(targets), targets
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, f"README links to missing files: {missing}"

"""What a user installs: the wheel carries every file of the package, the zoo and the scenarios."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import deploy_envs
from deploy_envs.agent_zoo import shipped_agents_dir
from deploy_envs.scenarios import shipped_scenarios_dir

PACKAGE = Path(deploy_envs.__file__).resolve().parent
ROOT = PACKAGE.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    """Build the wheel of this checkout (no build isolation: no network) and list its files."""
    if not (ROOT / "pyproject.toml").exists():
        pytest.fail("the packaging tests run from a checkout (pyproject.toml beside the package)")
    import shutil

    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("source")  # a copy, so no stale build/ folder of the checkout leaks into the wheel
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    for f in _package_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, src / f)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("deploy_envs-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _package_files() -> list[str]:
    """Every file of the package in the checkout (tracked by git where git is there)."""
    try:
        listed = subprocess.run(["git", "ls-files", "deploy_envs"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return [f for f in listed if (ROOT / f).is_file()]


def test_the_wheel_carries_every_package_file(wheel_names):
    files = _package_files()
    assert len(files) > 300  # the code, the agents, the scenarios, the weights, the trojan population
    missing = [f for f in files if f not in wheel_names]
    assert not missing, f"{len(missing)} package files are not in the wheel, e.g. {missing[:5]}"


def test_every_scenario_names_agents_and_files_the_wheel_carries(wheel_names):
    scenarios = sorted(shipped_scenarios_dir().glob("*.yaml"))
    assert len(scenarios) >= 45
    named = 0
    for path in scenarios:
        assert f"deploy_envs/scenarios/{path.name}" in wheel_names, path.name
        raw = yaml.safe_load(path.read_text())
        for spec in (raw.get("agents") or {}).values():
            if spec.get("zoo"):
                named += 1
                assert f"deploy_envs/agents/{spec['zoo']}/card.json" in wheel_names, f"{path.name}: agent {spec['zoo']!r} is not in the wheel"
            if spec.get("policy"):
                pytest.fail(f"{path.name}: names a policy file {spec['policy']!r}; shipped scenarios name zoo agents, which the wheel carries")
    assert named >= 30


def test_every_shipped_agent_has_its_weights_in_the_wheel(wheel_names):
    folders = sorted(p for p in shipped_agents_dir().iterdir() if (p / "card.json").exists())
    assert len(folders) >= 39
    for folder in folders:
        base = f"deploy_envs/agents/{folder.name}/"
        assert base + "card.json" in wheel_names
        # what the zoo loads: an SB3 zip, an RLlib checkpoint, a solved population, or a Q-table
        weights = ("model.zip", "rllib_checkpoint/rllib_checkpoint.json", "psro.json", "qtable.npz")
        assert any(base + w in wheel_names for w in weights), folder.name


def test_the_check_can_fail(wheel_names):
    """A file the wheel lacks is reported (guards the comparison itself)."""
    assert "deploy_envs/agents/no-such-agent/card.json" not in wheel_names
    assert "deploy_envs/__init__.py" in wheel_names


def test_shipped_sb3_agents_carry_no_optimizer_moments():
    """The wheel stays small: shipped SB3 zips keep the optimizer's parameter groups but not its state."""
    import io

    import torch

    zips = sorted(shipped_agents_dir().glob("*/model.zip"))
    assert len(zips) >= 37
    for path in zips:
        with zipfile.ZipFile(path) as zf:
            state = torch.load(io.BytesIO(zf.read("policy.optimizer.pth")), map_location="cpu", weights_only=True)
        assert state["param_groups"] and not state["state"], f"{path.parent.name}: strip it with deploy_envs.agent_zoo.strip_optimizer_state"


def test_strip_optimizer_state_keeps_predictions(tmp_path):
    """Stripping a freshly trained zip saves bytes and leaves the policy's actions unchanged."""
    import numpy as np
    from stable_baselines3 import PPO

    from deploy_envs.agent_zoo import strip_optimizer_state

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    path = tmp_path / "model.zip"
    model.save(path)
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    before = model.predict(obs, deterministic=True)[0]
    assert strip_optimizer_state(path) > 0
    assert strip_optimizer_state(path) == 0  # already stripped
    after = PPO.load(path, device="cpu").predict(obs, deterministic=True)[0]
    assert np.array_equal(before, after)


def test_the_base_install_runs_without_any_extra(tmp_path):
    """With every extra's package hidden, the package imports, lists, makes every env and runs a baseline
    (.ci/run also steps every id in a real base install);
    a feature that needs an extra stops with one clear error naming it."""
    code = """
import sys
for name in ("captum", "opacus", "fairlearn", "fastapi", "uvicorn", "httpx", "ray", "art", "nashpy"):
    sys.modules[name] = None  # import of it now raises ImportError, as if not installed
from typer.testing import CliRunner
import deploy_envs
from deploy_envs.cli import app
import gymnasium as gym
r = CliRunner().invoke(app, ["list"], terminal_width=250)
assert r.exit_code == 0 and "interpret" in r.output and "(not installed)" in r.output, r.output
from deploy_envs.core.extras import MissingExtraError
for env_id, entry in deploy_envs.ENV_CATALOG.items():  # every env runs without the extras, but those that declare one
    try:
        gym.make(env_id, **entry.test_kwargs).close()
    except MissingExtraError as exc:
        assert entry.extra is not None and entry.extra in str(exc), (env_id, exc)
    else:
        assert entry.extra is None, env_id
r = CliRunner().invoke(app, ["evaluate", "deploy_envs/Evasion-v0", "--baseline", "fgsm", "--episodes", "4", "-k", "threat_model=white_box", "--no-progress"])
assert r.exit_code == 0, r.output
r = CliRunner().invoke(app, ["evaluate", "deploy_envs/Explanation-v0", "--baseline", "saliency", "--episodes", "2", "--no-progress"], terminal_width=250)
assert r.exit_code == 2 and 'pip install "deploy-envs[interpret]"' in r.output, r.output
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_missing_base_requirement_is_one_clear_error(tmp_path):
    """gymnasium and the other base packages are not extras: without one, importing the package (and so its
    CLI) stops with an error naming it and the install command; the list is pyproject.toml's dependencies."""
    import re

    import deploy_envs

    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    declared = {re.split(r"[<>=!~\[ ]", d.strip().strip('",'))[0].lower() for d in block.splitlines() if d.strip().startswith('"')}
    assert declared == set(deploy_envs.BASE_REQUIREMENTS.values())
    for module, dist in (("gymnasium", "gymnasium"), ("torch", "torch")):
        code = f"import sys; sys.modules[{module!r}] = None\nimport deploy_envs.cli"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode != 0 and last.startswith("ImportError: deploy-envs needs") and dist in last, proc.stderr[-1500:]
        assert "not an optional extra" in last and "pip install deploy-envs" in last, last

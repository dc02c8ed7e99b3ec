"""The trust boundary: shipped agents load only if they match their sha256 manifest; agents,
policies and checkpoints from anywhere else need ``trust_agent_code=True``; the weight cache
cannot be forged with a self-made sidecar."""
from __future__ import annotations

import io
import json
import shutil

import gymnasium as gym
import pytest
import torch
from typer.testing import CliRunner

import deploy_envs  # noqa: F401
from deploy_envs import agent_zoo, trust
from deploy_envs.agent_zoo import load_agent, shipped_agents_dir
from deploy_envs.core.agents import SB3Agent
from deploy_envs.trust import TamperedAgentError, UntrustedAgentError

AGENT = "gridworld-friend_foe-dqn"  # a small SB3 agent
ADVERSARY = "rarl-adversary"


def test_manifest_lists_every_file_of_every_shipped_agent_and_all_match():
    root = shipped_agents_dir()
    manifest = trust.read_manifest(root)
    on_disk = {
        p.relative_to(root).as_posix()
        for folder in root.iterdir() if folder.is_dir() and folder.name != "__pycache__"
        for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert on_disk == set(manifest), f"unlisted: {sorted(on_disk - set(manifest))[:5]}, missing: {sorted(set(manifest) - on_disk)[:5]}"
    for rel, digest in manifest.items():
        assert trust.sha256_file(root / rel) == digest, rel


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of two shipped agents with the real manifest, standing in for the shipped zoo."""
    root = tmp_path / "shipped"
    root.mkdir()
    for name in (AGENT, ADVERSARY):
        shutil.copytree(shipped_agents_dir() / name, root / name)
    shutil.copy(shipped_agents_dir() / trust.MANIFEST_NAME, root / trust.MANIFEST_NAME)
    monkeypatch.setattr(agent_zoo, "shipped_agents_dir", lambda: root)
    monkeypatch.setenv("DEPLOY_ENVS_AGENTS", str(tmp_path / "user_zoo"))
    trust._VERIFIED.clear()
    return root


def test_untampered_shipped_agent_loads_silently(shipped_copy, recwarn):
    agent, card = load_agent(AGENT)
    assert card.name == AGENT and agent is not None
    assert not [w for w in recwarn if "execute code" in str(w.message)]


@pytest.mark.parametrize("tamper", ["flip_byte", "add_file", "remove_card", "edit_card"])
def test_tampered_shipped_agent_is_refused_even_with_the_opt_in(shipped_copy, tamper, monkeypatch):
    folder = shipped_copy / AGENT
    if tamper == "flip_byte":
        data = bytearray((folder / "model.zip").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "model.zip").write_bytes(bytes(data))
    elif tamper == "add_file":
        (folder / "payload.py").write_text("print('pwned')\n")
    elif tamper == "remove_card":
        (folder / "CARD.md").unlink()
    else:
        card = json.loads((folder / "card.json").read_text())
        card["algorithm"] = "PPO"
        (folder / "card.json").write_text(json.dumps(card))
    import stable_baselines3

    def must_not_load(*a, **k):
        raise AssertionError("a tampered zip was opened")

    monkeypatch.setattr(stable_baselines3.DQN, "load", must_not_load)
    for trusted in (False, True):
        with pytest.raises(TamperedAgentError, match=AGENT):
            load_agent(AGENT, trust_agent_code=trusted)


def test_outside_agent_needs_the_opt_in_and_is_never_opened_without_it(shipped_copy, tmp_path, monkeypatch):
    user = tmp_path / "user_zoo"
    shutil.copytree(shipped_copy / AGENT, user / AGENT)  # same name in the user's zoo shadows the shipped one
    import stable_baselines3

    calls = []
    real = stable_baselines3.DQN.load
    monkeypatch.setattr(stable_baselines3.DQN, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    with pytest.raises(UntrustedAgentError, match="trust_agent_code=True"):
        load_agent(AGENT)
    with pytest.raises(UntrustedAgentError, match="can execute code"):
        SB3Agent.load(str(user / AGENT / "model.zip"), "DQN")
    assert not calls, "an untrusted zip was opened"
    with pytest.warns(UserWarning, match="can execute code"):
        agent, card = load_agent(AGENT, trust_agent_code=True)
    assert card.name == AGENT and calls


def test_opponent_folder_needs_the_opt_in(shipped_copy, tmp_path):
    outside = tmp_path / "elsewhere" / ADVERSARY
    shutil.copytree(shipped_copy / ADVERSARY, outside)
    nav = {"level": 1, "max_steps": 10}
    gym.make("deploy_envs/DisturbedNavigation-v0", opponent=ADVERSARY, **nav)  # shipped and intact: fine
    with pytest.raises(UntrustedAgentError, match="opponent="):
        gym.make("deploy_envs/DisturbedNavigation-v0", opponent=str(outside), **nav)
    with pytest.warns(UserWarning, match="can execute code"):
        env = gym.make("deploy_envs/DisturbedNavigation-v0", opponent=str(outside), trust_agent_code=True, **nav)
    env.reset(seed=0)
    data = bytearray((shipped_copy / ADVERSARY / "model.zip").read_bytes())
    data[100] ^= 0xFF
    (shipped_copy / ADVERSARY / "model.zip").write_bytes(bytes(data))
    with pytest.raises(TamperedAgentError):
        gym.make("deploy_envs/DisturbedNavigation-v0", opponent=ADVERSARY, trust_agent_code=True, **nav)


def test_scenario_policy_needs_the_opt_in(shipped_copy):
    from deploy_envs.scenarios.runner import AgentSpec, build_agent

    spec = AgentSpec(policy=str(shipped_copy.parent / "nowhere.zip"))
    with pytest.raises(UntrustedAgentError):
        build_agent("p", spec, "deploy_envs/FriendFoe-v0")


def test_cli_policy_needs_the_flag(tmp_path):
    from deploy_envs.cli import app

    zip_path = tmp_path / "policy.zip"
    zip_path.write_bytes(b"not even a zip")
    result = CliRunner().invoke(app, ["evaluate", "deploy_envs/FriendFoe-v0", "--policy", str(zip_path), "--algorithm", "DQN", "--episodes", "1"])
    assert result.exit_code != 0
    assert "--trust-agent-code" in result.output


# ------------------------------------------------------------------ weight cache
def test_sidecar_never_overrides_the_manifest(tmp_path):
    from deploy_envs.models import zoo

    dest = tmp_path / "weights"
    shutil.copytree(zoo.WEIGHTS_DIR, dest)
    manifest = dest / "manifest.json"
    # a forged "retrained" copy in the cache with its own matching sidecar
    model = zoo.load_model("digits-standard", manifest_path=manifest)
    forged = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    cached = zoo._cache_path("digits-standard")
    cached.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(forged, buf)
    cached.write_bytes(buf.getvalue())
    cached.with_suffix(".sha256").write_text(f"{trust.sha256_file(cached)}  {cached.name}\n")
    (dest / "digits-standard.pt").write_bytes(b"corrupted")
    with pytest.raises(zoo.ZooIntegrityError, match="corrupted"):
        zoo.load_model("digits-standard", manifest_path=manifest)


def test_forged_cache_entry_of_an_unshipped_model_needs_the_opt_in(tmp_path):
    from deploy_envs.models import zoo

    name = next(n for n in zoo.RECIPES if n not in zoo.read_manifest())
    cached = zoo._cache_path(name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"forged")
    cached.with_suffix(".sha256").write_text(f"{trust.sha256_file(cached)}  {cached.name}\n")
    with pytest.raises(zoo.ZooIntegrityError, match="trust_cache=True"):
        zoo.load_model(name)


def test_forged_membership_victim_is_refused(monkeypatch):
    from deploy_envs.models import membership_victims as mv

    recipe = mv.VICTIM_RECIPES["standard"]
    path = mv.cache_dir() / "membership" / f"digits-standard-{recipe.key()}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = mv.MLP(in_features=64, num_classes=10, hidden=recipe.hidden)
    forged = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(forged, buf)
    path.write_bytes(buf.getvalue())
    path.with_suffix(".sha256").write_text(f"{mv._sha256(buf.getvalue())}  {path.name}\n")
    monkeypatch.setattr(mv, "_MEMORY", {})

    class Retrained(Exception):
        pass

    def retrain(*a, **k):
        raise Retrained

    monkeypatch.setattr(mv, "train_victim", retrain)
    with pytest.raises(Retrained):  # the forged file was refused: the victim is retrained instead
        mv.load_victim("standard")
    assert mv.shipped_digests()[f"digits-standard-{recipe.key()}"] != mv.state_digest(forged)

"""The trained reference-agent zoo: ``<zoo>/<name>/`` with ``model.zip`` and ``card.json``.

A card records what the agent is (env id and kwargs, algorithm, hyperparameters,
training budget, the scenario that trained it) and how it scored.

Two folders make the zoo:

* the shipped zoo, ``deploy_envs/agents/`` inside the installed package (found with
  :mod:`importlib.resources`, so it works from a wheel and from any directory);
* the user's zoo, ``$DEPLOY_ENVS_AGENTS`` or else ``./agents`` in the working
  directory. Training writes there, and its agents add to the shipped ones (a user
  agent with a shipped agent's name takes its place).
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy_envs.core.agents import Agent, SB3Agent


def shipped_agents_dir() -> Path:
    """The zoo that ships inside the package (read-only in an installed wheel)."""
    return Path(str(resources.files("deploy_envs") / "agents"))


def agents_dir() -> Path:
    """The user's zoo, where training writes: ``$DEPLOY_ENVS_AGENTS``, else ``./agents``."""
    env = os.environ.get("DEPLOY_ENVS_AGENTS")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / "agents"


def zoo_dirs() -> list[Path]:
    """The folders searched for an agent by name, first match wins: the user's zoo, then the shipped one."""
    user, shipped = agents_dir(), shipped_agents_dir()
    return [user, shipped] if user.resolve() != shipped.resolve() else [shipped]


@dataclass
class AgentCard:
    """What a trained agent is and how it scored.

    ``evaluations`` are structured: each is ``{"metrics": {...}, "episodes": n, "seed": s,
    "env_kwargs": {...}, "num_envs": copies or None, "label": ""}`` (see
    :func:`deploy_envs.training.cards.evaluation`), optionally with ``"intervals"`` (metric ->
    mean, low, high, n, method: the 95% interval) and ``"results_file"`` for the evaluations
    refreshed from a scenario's results (``python -m deploy_envs.scenarios.results cards``); ``training`` holds what the training run
    recorded (cost and multiplier histories, the last RLlib iteration, ...).
    """

    name: str
    env_id: str
    env_kwargs: dict[str, Any]
    algorithm: str
    hyperparameters: dict[str, Any]
    timesteps: int
    num_envs: int
    seed: int
    scenario: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    train_seconds: float | None = None
    device: str = "cpu"

    def metrics(self, **env_kwargs: Any) -> dict[str, Any]:
        """The metrics of the first evaluation whose env_kwargs include ``env_kwargs`` (all: the first one)."""
        for ev in self.evaluations:
            if all(ev.get("env_kwargs", {}).get(k) == v for k, v in env_kwargs.items()):
                return ev["metrics"]
        raise ValueError(f"agent {self.name!r} has no evaluation with env_kwargs {env_kwargs}; it has {[ev.get('env_kwargs') for ev in self.evaluations]}")

    def to_markdown(self) -> str:
        lines = [f"# {self.name}", "", self.notes, "", "| field | value |", "|---|---|"]
        for k in ("env_id", "env_kwargs", "algorithm", "hyperparameters", "timesteps", "num_envs", "seed", "scenario", "device", "train_seconds"):
            lines.append(f"| {k} | `{getattr(self, k)}` |")
        if self.evaluations:
            lines += ["", "## Evaluations", "", "| evaluation | metric | value |", "|---|---|---|"]
            for ev in self.evaluations:
                where = ev.get("label") or f"{ev['episodes']} episodes, seed {ev['seed']}" + (f", {ev['num_envs']} copies" if ev.get("num_envs") else "") + f", env_kwargs {ev.get('env_kwargs', {})}"
                ivs = ev.get("intervals", {})
                for m, v in ev["metrics"].items():
                    iv = ivs.get(m)
                    if iv and iv.get("low") is not None and not iv["low"] == iv["high"] == v:
                        lines.append(f"| {where} | {m} | {v:.4g} [{iv['low']:.4g}, {iv['high']:.4g}], n={iv['n']} |")
                    else:
                        lines.append(f"| {where} | {m} | {v:.4g} |" if isinstance(v, float) else f"| {where} | {m} | {v} |")
        if self.training:
            lines += ["", "## Training", "", "| record | value |", "|---|---|"]
            for k, v in self.training.items():
                lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
        return "\n".join(lines) + "\n"


_OLD_KEY = re.compile(r"^(\d+) episodes, seed (\d+)(?:, (\d+) copies)?, env_kwargs (\{.*\})(.*)$")


def _card_from_json(data: dict[str, Any]) -> AgentCard:
    """Read a card, including the older layout whose scores sat under formatted string keys."""
    data = dict(data)
    scores = data.pop("scores", None)
    if scores is not None:
        import ast

        evaluations, training = list(data.get("evaluations", [])), dict(data.get("training", {}))
        for key, value in scores.items():
            m = _OLD_KEY.match(key)
            if m and isinstance(value, dict):
                evaluations.append({
                    "metrics": value, "episodes": int(m.group(1)), "seed": int(m.group(2)),
                    "env_kwargs": ast.literal_eval(m.group(4)), "num_envs": int(m.group(3)) if m.group(3) else None,
                    "label": m.group(5).lstrip(", "),
                })
            elif key.startswith("training"):
                training.update(value if isinstance(value, dict) else {key: value})
            else:
                evaluations.append({"metrics": value, "episodes": None, "seed": None, "env_kwargs": {}, "num_envs": None, "label": key})
        data["evaluations"], data["training"] = evaluations, training
    return AgentCard(**data)


def list_agents(root: Path | None = None) -> list[AgentCard]:
    """Cards of every agent in ``root``, or in the whole zoo (user agents shadow shipped ones of the same name)."""
    roots = [root] if root is not None else zoo_dirs()
    cards: dict[str, AgentCard] = {}
    for r in roots:
        if r.exists():
            for p in sorted(r.glob("*/card.json")):
                card = read_card(p.parent)
                cards.setdefault(card.name, card)
    return sorted(cards.values(), key=lambda c: c.name)


def read_card(folder: Path) -> AgentCard:
    return _card_from_json(json.loads((Path(folder) / "card.json").read_text()))


def write_card(folder: Path, card: AgentCard) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(asdict(card), indent=2, default=str) + "\n")
    (folder / "CARD.md").write_text(card.to_markdown())


def resolve_agent_folder(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if (p / "card.json").exists():
        return p
    for root in zoo_dirs():
        q = root / name_or_path
        if (q / "card.json").exists():
            return q
    known = [c.name for c in list_agents()]
    raise ValueError(
        f"agent={name_or_path!r} is not in the agent zoo (shipped, or {agents_dir()}); known agents: {', '.join(known) or 'none'}"
    )


def load_agent(name_or_path: str, deterministic: bool = True, *, trust_agent_code: bool = False) -> tuple[Agent, AgentCard]:
    """Load a zoo agent and its card (the card says which env and kwargs it was trained on).

    A shipped agent loads only if its files match the sha256 manifest; any other folder
    (the user's zoo, a path) needs ``trust_agent_code=True``, since SB3 zips and RLlib
    checkpoints can execute code when loaded (see :mod:`deploy_envs.trust`).
    """
    from deploy_envs.trust import check_agent_path

    folder = resolve_agent_folder(name_or_path)
    check_agent_path(folder, trust_agent_code, what="agent")
    card = read_card(folder)
    if (folder / "psro.json").exists():
        raise ValueError(f"agent={name_or_path!r} is a PSRO population of {card.env_id}, not one agent: play it with "
                         f"`deploy-envs evaluate {card.env_id} --population {folder}` or deploy_envs.training.psro.meta_strategy_policies")
    if (folder / "rllib_checkpoint").exists():  # trained with Ray RLlib (deploy_envs.integrations.rllib)
        from deploy_envs.integrations.rllib import load_rllib_zoo_agent

        return load_rllib_zoo_agent(folder, card, deterministic, trust_agent_code=trust_agent_code), card
    if (folder / "qtable.npz").exists():  # a tabular Q-learning agent (deploy_envs.topics.gridworlds.tabular)
        from deploy_envs.topics.gridworlds.tabular import load_q_agent

        return load_q_agent(folder), card
    agent = SB3Agent.load(str(folder / "model.zip"), card.algorithm, deterministic, trust_agent_code=trust_agent_code)
    agent.name = card.name
    return agent, card


def strip_optimizer_state(zip_path: str | Path) -> int:
    """Drop the optimizer's moment estimates from an SB3 ``model.zip``; returns the bytes saved.

    Prediction does not use them, and SB3 still loads the file: the optimizer entry keeps its
    parameter groups with an empty state, as a fresh optimizer has (training resumed from the
    file restarts Adam's moments). Shipped agents are stored this way to keep the wheel small.
    """
    import io
    import zipfile

    import torch

    zip_path = Path(zip_path)
    before = zip_path.stat().st_size
    with zipfile.ZipFile(zip_path) as zf:
        members = {info.filename: zf.read(info.filename) for info in zf.infolist()}
    if "policy.optimizer.pth" not in members:
        return 0
    state = torch.load(io.BytesIO(members["policy.optimizer.pth"]), map_location="cpu", weights_only=True)
    if not state.get("state"):
        return 0
    state["state"] = {}
    buf = io.BytesIO()
    torch.save(state, buf)
    members["policy.optimizer.pth"] = buf.getvalue()
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    tmp.replace(zip_path)
    return before - zip_path.stat().st_size

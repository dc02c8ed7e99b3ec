"""The trained reference-agent zoo: ``agents/<name>/`` with ``model.zip`` and ``card.json``.

A card records what the agent is (env id and kwargs, algorithm, hyperparameters,
training budget, the scenario that trained it) and how it scored. The zoo lives
in the repository's ``agents/`` folder, or wherever ``DEPLOY_ENVS_AGENTS`` points.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy_envs.core.agents import Agent, SB3Agent


def agents_dir() -> Path:
    env = os.environ.get("DEPLOY_ENVS_AGENTS")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[1] / "agents"
    return repo if repo.exists() else Path.cwd() / "agents"


@dataclass
class AgentCard:
    name: str
    env_id: str
    env_kwargs: dict[str, Any]
    algorithm: str
    hyperparameters: dict[str, Any]
    timesteps: int
    num_envs: int
    seed: int
    scenario: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    train_seconds: float | None = None
    device: str = "cpu"

    def to_markdown(self) -> str:
        lines = [f"# {self.name}", "", self.notes, "", "| field | value |", "|---|---|"]
        for k in ("env_id", "env_kwargs", "algorithm", "hyperparameters", "timesteps", "num_envs", "seed", "scenario", "device", "train_seconds"):
            lines.append(f"| {k} | `{getattr(self, k)}` |")
        if self.scores:
            lines += ["", "## Scores", "", "| evaluation | metric | value |", "|---|---|---|"]
            for ev, metrics in self.scores.items():
                for m, v in (metrics.items() if isinstance(metrics, dict) else [("value", metrics)]):
                    lines.append(f"| {ev} | {m} | {v:.4g} |" if isinstance(v, float) else f"| {ev} | {m} | {v} |")
        return "\n".join(lines) + "\n"


def list_agents(root: Path | None = None) -> list[AgentCard]:
    root = root or agents_dir()
    if not root.exists():
        return []
    return [read_card(p.parent) for p in sorted(root.glob("*/card.json"))]


def read_card(folder: Path) -> AgentCard:
    return AgentCard(**json.loads((folder / "card.json").read_text()))


def write_card(folder: Path, card: AgentCard) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(asdict(card), indent=2, default=str) + "\n")
    (folder / "CARD.md").write_text(card.to_markdown())


def resolve_agent_folder(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if (p / "card.json").exists():
        return p
    q = agents_dir() / name_or_path
    if (q / "card.json").exists():
        return q
    known = [c.name for c in list_agents()]
    raise ValueError(f"agent={name_or_path!r} is not in the agent zoo ({agents_dir()}); known agents: {', '.join(known) or 'none'}")


def load_agent(name_or_path: str, deterministic: bool = True) -> tuple[Agent, AgentCard]:
    """Load a zoo agent and its card (the card says which env and kwargs it was trained on)."""
    folder = resolve_agent_folder(name_or_path)
    card = read_card(folder)
    if (folder / "psro.json").exists():
        raise ValueError(f"agent={name_or_path!r} is a PSRO population of {card.env_id}, not one agent: play it with "
                         f"`deploy-envs evaluate {card.env_id} --population {folder}` or deploy_envs.training.psro.meta_strategy_policies")
    if (folder / "rllib_checkpoint").exists():  # trained with Ray RLlib (deploy_envs.integrations.rllib)
        from deploy_envs.integrations.rllib import load_rllib_zoo_agent

        return load_rllib_zoo_agent(folder, card, deterministic), card
    agent = SB3Agent.load(str(folder / "model.zip"), card.algorithm, deterministic)
    agent.name = card.name
    return agent, card

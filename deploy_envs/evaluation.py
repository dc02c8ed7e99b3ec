"""Evaluate an agent on a native vector env and summarize the episodes as a scorecard.

:func:`evaluate` is what ``deploy-envs evaluate``, the scenarios and the tests
of reproduced results all call. Each copy of the vector env runs a fixed quota
of episodes, so the set of inputs an agent is evaluated on depends only on the
seed, and two agents evaluated with the same seed face the same inputs.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from deploy_envs.core.agents import Agent
from deploy_envs.core.batched import select_info
from deploy_envs.core.validation import check_positive

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_envs.metrics.intervals import Interval


@dataclass
class Scorecard:
    """Per-episode records and their means."""

    env_id: str
    agent: str
    episodes: int
    seed: int
    env_kwargs: dict[str, Any]
    records: list[dict[str, float]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, float]:
        keys: dict[str, list[float]] = defaultdict(list)
        for r in self.records:
            for k, v in r.items():
                keys[k].append(v)
        out = {}
        for k, vals in keys.items():
            out[k] = float(np.mean(vals))
        if "success" in out:
            out["success_rate"] = out.pop("success")
        return out

    @property
    def intervals(self) -> dict[str, "Interval"]:
        """Per metric: the mean, its 95% interval over the episodes and n (see :mod:`deploy_envs.metrics.intervals`).

        0/1 outcomes (``success``, flags) get the Wilson interval, everything else the
        percentile bootstrap of the mean over episodes (seeded, so it is reproducible).
        """
        from deploy_envs.metrics.intervals import intervals

        out = intervals(self.records)
        if "success" in out:
            out["success_rate"] = out.pop("success")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "agent": self.agent,
            "episodes": self.episodes,
            "seed": self.seed,
            "env_kwargs": {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else repr(v)) for k, v in self.env_kwargs.items()},
            "summary": self.summary,
            "intervals": {k: iv.to_dict() for k, iv in self.intervals.items()},
        }


def _numeric(info: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = float(v)
        elif isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def evaluate(
    env_id: str,
    agent: Agent,
    *,
    episodes: int = 100,
    seed: int = 0,
    num_envs: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    vector_wrapper: Any = None,
    skip_info_keys: tuple[str, ...] = (
        "sample_index", "true_label", "predicted_label", "target_label", "arm", "optimal_arm", "step_pseudo_regret",
    ),
) -> Scorecard:
    """Run ``agent`` for ``episodes`` episodes of ``env_id`` (native batch) and return the scorecard.

    ``vector_wrapper``, if given, is called with the native vector env and returns the env to run
    (e.g. a side-effect penalty: ``lambda v: apply_penalty(v, "rr")``).
    """
    episodes = check_positive("episodes", episodes, integer=True)
    env_kwargs = dict(env_kwargs or {})
    n = min(episodes, 64) if num_envs is None else check_positive("num_envs", num_envs, integer=True)
    venv = gym.make_vec(env_id, num_envs=n, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs)
    if vector_wrapper is not None:
        venv = vector_wrapper(venv)
    quota = np.full(n, episodes // n, dtype=np.int64)
    quota[: episodes % n] += 1
    done_count = np.zeros(n, dtype=np.int64)
    ep_return = np.zeros(n)
    ep_len = np.zeros(n, dtype=np.int64)
    card = Scorecard(env_id, getattr(agent, "name", type(agent).__name__), episodes, seed, env_kwargs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, desc=f"{card.agent} on {env_id.split('/')[-1]}", unit="ep")
    try:
        agent.setup(venv)
        obs, _ = venv.reset(seed=seed)
        episode_start = np.ones(n, dtype=bool)
        while (done_count < quota).any():
            actions = agent.act(obs, episode_start)
            obs, reward, terminated, truncated, info = venv.step(actions)
            ep_return += reward
            ep_len += 1
            done = terminated | truncated
            for i in np.flatnonzero(done):
                if done_count[i] < quota[i]:
                    rec = {k: v for k, v in _numeric(select_info(info["final_info"], i)).items() if k not in skip_info_keys}
                    rec["return"] = float(ep_return[i])
                    rec["length"] = float(ep_len[i])
                    card.records.append(rec)
                    if bar is not None:
                        bar.update(1)
                done_count[i] += 1
                ep_return[i] = 0.0
                ep_len[i] = 0
            episode_start = done
    finally:
        venv.close()
        if bar is not None:
            bar.close()
    return card

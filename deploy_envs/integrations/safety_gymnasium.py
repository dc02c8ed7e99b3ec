"""Safety-Gymnasium's step API for deploy_envs constrained tasks.

Safety-Gymnasium (Ji et al. 2023, arXiv 2310.12567) and the libraries built on it
(OmniSafe, FSRL, ...) expect ``step`` to return a 6-tuple
``(obs, reward, cost, terminated, truncated, info)`` with the cost as its own value.
deploy_envs keeps the Gymnasium 5-tuple and puts the cost in ``info["cost"]``;
these wrappers move it out:

* :class:`SafetyGymnasiumWrapper` for a single ``gymnasium.Env`` (``cost`` a float);
* :class:`SafetyGymnasiumVectorWrapper` for a vector env (``cost`` an array, one per copy;
  ``0`` for a copy being autoreset under ``NEXT_STEP``, and under ``SAME_STEP`` the cost of
  a finished copy's last step, read from ``info["final_info"]``).

:func:`make` and :func:`make_vec` build a registered env already wrapped::

    from deploy_envs.integrations.safety_gymnasium import make
    env = make("deploy_envs/SafeNavigation-v0", level=1)
    obs, info = env.reset(seed=0)
    obs, reward, cost, terminated, truncated, info = env.step(env.action_space.sample())

Only envs whose ``info`` carries ``"cost"`` are accepted (checked on the first step).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

COST_KEY = "cost"


def _missing_cost(env: Any) -> ValueError:
    spec = getattr(env, "spec", None)
    name = spec.id if spec is not None else type(env).__name__
    return ValueError(f"env {name!r} puts no {COST_KEY!r} in its step info; the Safety-Gymnasium wrapper needs a constrained task such as deploy_envs/SafeNavigation-v0")


class SafetyGymnasiumWrapper(gym.Wrapper):
    """A single env whose ``step`` returns ``(obs, reward, cost, terminated, truncated, info)``."""

    def step(self, action):  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(action)
        if COST_KEY not in info:
            raise _missing_cost(self.env)
        return obs, reward, float(info[COST_KEY]), terminated, truncated, info


class SafetyGymnasiumVectorWrapper(gym.vector.VectorWrapper):
    """A vector env whose ``step`` returns ``(obs, rewards, costs, terminations, truncations, infos)``."""

    def step(self, actions):  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(actions)
        n = self.num_envs
        if COST_KEY not in info and "final_info" not in info:
            raise _missing_cost(self.env)
        cost = np.zeros(n, dtype=np.float64)
        if COST_KEY in info:
            mask = info.get("_" + COST_KEY, np.ones(n, dtype=bool))
            cost[mask] = np.asarray(info[COST_KEY], dtype=np.float64)[mask]
        if "final_info" in info:  # SAME_STEP: a finished copy's cost is in final_info (gymnasium's layout)
            final = info["final_info"]
            if COST_KEY in final:
                done = np.asarray(final["_" + COST_KEY], dtype=bool)
                cost[done] = np.asarray(final[COST_KEY], dtype=np.float64)[done]
        return obs, reward, cost, terminated, truncated, info


def make(env_id: str, **kwargs: Any) -> SafetyGymnasiumWrapper:
    """``gymnasium.make(env_id, **kwargs)`` with the 6-tuple step."""
    return SafetyGymnasiumWrapper(gym.make(env_id, **kwargs))


def make_vec(env_id: str, num_envs: int = 1, **kwargs: Any) -> SafetyGymnasiumVectorWrapper:
    """``gymnasium.make_vec(env_id, num_envs, **kwargs)`` (the native batch) with the 6-tuple step."""
    return SafetyGymnasiumVectorWrapper(gym.make_vec(env_id, num_envs=num_envs, **kwargs))

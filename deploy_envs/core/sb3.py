"""Stable-Baselines3 adapter: a native ``VectorEnv`` as an SB3 ``VecEnv``.

SB3 cannot train on a ``gymnasium.vector.VectorEnv`` directly. :class:`SB3VecEnv`
wraps one of ours (built with ``SAME_STEP`` autoreset) so that PPO and friends
step the whole native batch with one call. It follows SB3's ``VecEnv`` contract:
``reset()`` returns observations only (reset infos in ``reset_infos``), and
``step_wait()`` returns ``(obs, rewards, dones, infos)`` with a finished copy
already reset and its last observation in ``infos[i]["terminal_observation"]``
and ``infos[i]["TimeLimit.truncated"]`` set, which PPO uses to bootstrap.

Use :func:`make_sb3_vec_env` to build one from an env id.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from deploy_envs.core.batched import select_info
from deploy_envs.core.views import NativeVectorEnv


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a deploy_envs native vector env (``SAME_STEP`` autoreset)."""

    def __init__(self, venv: NativeVectorEnv) -> None:
        base = venv.unwrapped if hasattr(venv, "unwrapped") else venv
        if not isinstance(base, NativeVectorEnv):
            raise TypeError(f"SB3VecEnv wraps a deploy_envs NativeVectorEnv, got {type(venv).__name__}")
        if base.autoreset_mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                "SB3VecEnv needs a vector env built with autoreset_mode=AutoresetMode.SAME_STEP "
                f"(got {base.autoreset_mode}); use make_sb3_vec_env(env_id, num_envs)"
            )
        self.venv = venv
        self.render_mode = getattr(venv, "render_mode", None)
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed_next: int | None = None
        self._options_next: dict | None = None

    # ----------------------------------------------------------- core methods
    def reset(self):
        obs, info = self.venv.reset(seed=self._seed_next, options=self._options_next)
        self._seed_next = None
        self.reset_infos = [select_info(info, i) for i in range(self.num_envs)]
        return obs

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        # SB3 semantics: the seed applies at the next reset; copy i gets seed + i
        self._seed_next = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        self._options_next = options[0] if isinstance(options, list) else options

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [select_info(info, i) for i in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            final = select_info(info["final_info"], i)
            reset_info = infos[i]
            infos[i] = dict(final)
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            self.reset_infos[i] = reset_info
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # ----------------------------------------------------- attribute plumbing
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv.unwrapped, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv.unwrapped, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.venv.unwrapped, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.render()
        return list(frames) if frames is not None else [None] * self.num_envs


def make_sb3_vec_env(env_id: str, num_envs: int = 8, *, monitor: bool = True, seed: int | None = None, **kwargs: Any) -> VecEnv:
    """Build the native batch of ``env_id`` as an SB3 ``VecEnv`` (wrapped in ``VecMonitor``)."""
    venv = gym.make_vec(env_id, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
    vec: VecEnv = SB3VecEnv(venv)
    if seed is not None:
        vec.seed(seed)
    if monitor:
        # record the evaluator's measures this env reports at episode end (VecMonitor needs them in every final info)
        probe = gym.make(env_id, **kwargs)
        probe.action_space.seed(0)
        probe.reset(seed=0)
        _, _, _, _, info = probe.step(probe.action_space.sample())
        probe.close()
        info_keys = tuple(k for k in ("success", "queries", "cost", "hidden_performance") if k in info)
        vec = VecMonitor(vec, info_keywords=info_keys)
    return vec

"""``deploy_envs/DisturbedNavigation-v0``: SafeNavigation under a disturbance force played by a fixed opponent.

The protagonist's side of the robust-control game ``RobustNavigation-v0`` as a
single-agent env: the game's adversary role is played inside the env by a random
push, a steady wind, or a trained adversary from the agent zoo. It is how a
navigation policy is tested for robustness (Pinto et al. 2017 evaluate RARL policies
under random and adversarial disturbances of several strengths).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from deploy_envs.core.batched import validate_batch
from deploy_envs.topics.navigation.robust_navigation import RobustNavigationCore

log = logging.getLogger(__name__)

OPPONENTS = ("none", "random", "wind")


class DisturbedNavigationCore(RobustNavigationCore):
    """## Description

    ``SafeNavigation-v0`` (a point robot reaching goals among hazards; each step inside a
    hazard costs 1) with a bounded disturbance force pushing the robot, as in the
    robust-control game ``RobustNavigation-v0`` (Robust Adversarial RL, Pinto, Davidson,
    Sukthankar and Gupta 2017, ICML), whose push dynamics it uses: the force, in the
    robot's frame and clipped to the unit disc, is scaled by ``disturbance`` times the
    robot's maximum forward force and drives a damped push velocity added to the robot's
    motion. Here the game's adversary is played by ``opponent``:

    * ``"none"``: no push (the env is ``SafeNavigation-v0`` step for step);
    * ``"random"``: a force drawn uniformly from ``[-1, 1]^2`` every step (Pinto et al.'s
      random-disturbance test);
    * ``"wind"``: a full-strength force in a direction drawn at the start of each episode
      and fixed in the world frame (a steady model error);
    * the name of an agent-zoo folder (or a path to one) holding a trained adversary of
      ``RobustNavigation-v0`` (e.g. ``rarl-adversary``): its deterministic policy on the
      game's adversary observation.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: SafeNavigation's forward force and turn rate.

    ## Observation Space

    SafeNavigation's observation (velocity, gyro, goal / hazard / vase lidar rings), with
    its bounds; the push is not observed.

    ## Rewards

    SafeNavigation's: progress toward the goal plus ``reward_goal`` on reaching it.

    ## Starting State

    SafeNavigation's starting state with no push velocity; ``"wind"`` draws its direction.

    ## Episode End

    No termination; truncation after ``max_steps`` steps.

    ## Info

    SafeNavigation's info (``cost``, ``episode_cost``, ``cost_limit``,
    ``cost_limit_exceeded``, ``goals_reached``, ``goal_distance``, ``hazard_distance``) and
    ``disturbance_force`` (norm of the applied force as a fraction of the robot's maximum
    force).

    ## Arguments

    * ``opponent``: ``"none"``, ``"random"`` (default), ``"wind"`` or a zoo adversary.
    * ``trust_agent_code``: needed (``True``) to load an ``opponent`` from outside the shipped zoo,
      whose files are not vouched for by its sha256 manifest (an SB3 zip can execute code).
    * ``disturbance``: the largest force as a fraction of the robot's maximum forward
      force, in [0, 10] (default 0.5).
    * All arguments of ``SafeNavigation-v0`` (``level``, ``max_steps``, ``cost_limit``, ...).

    ## Version History

    * v0: initial release.
    """

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *, opponent: str = "random", disturbance: float = 0.5,
                 trust_agent_code: bool = False, **nav_kwargs: Any) -> None:
        super().__init__(num_envs, render_mode, disturbance=disturbance, cost_weight=0.0, **nav_kwargs)
        if not isinstance(opponent, str):
            raise ValueError(f"opponent={opponent!r} must be one of {', '.join(OPPONENTS)} or the name of a zoo adversary")  # noqa: TRY004
        self.opponent = opponent
        self.model = None if opponent in OPPONENTS else self._load_adversary(opponent, trust_agent_code)
        self.single_observation_space = self.observation_spaces["protagonist"]
        self.single_action_space = self.action_spaces["protagonist"]
        self.adv_obs = np.zeros((self.num_envs, self.observation_spaces["adversary"].shape[0]), np.float32)
        self.wind = np.zeros((self.num_envs, 2))

    def _load_adversary(self, name: str, trust_agent_code: bool = False):
        from stable_baselines3 import PPO

        from deploy_envs.agent_zoo import resolve_agent_folder

        try:
            folder = resolve_agent_folder(name)
        except ValueError as e:
            raise ValueError(f"opponent={name!r} is not one of {', '.join(OPPONENTS)} nor a zoo adversary: {e}") from None
        from deploy_envs.trust import check_agent_path

        check_agent_path(folder, trust_agent_code, what="opponent")  # an SB3 zip can execute code when loaded
        model = PPO.load(str(folder / "model.zip"), device="cpu")
        want, got = self.observation_spaces["adversary"].shape, model.observation_space.shape
        if want != got:
            raise ValueError(f"opponent={name!r} expects observations of shape {got}; a RobustNavigation-v0 adversary here sees {want}")
        log.info("DisturbedNavigation: adversary %s from %s", name, folder)
        return model

    def validate_actions(self, actions: Any, batch: int) -> np.ndarray:
        return validate_batch(self.single_action_space, actions, batch)

    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        obs, infos = super().reset_indices(idx, options)
        if self.opponent == "wind":
            angle = np.array([self.rngs[i].uniform(-math.pi, math.pi) for i in idx])
            self.wind[idx] = np.stack([np.cos(angle), np.sin(angle)], -1)
        self.adv_obs[idx] = obs["adversary"]
        return obs["protagonist"], infos["protagonist"]

    def _push(self, idx: np.ndarray) -> np.ndarray:
        if self.opponent == "none":
            return np.zeros((len(idx), 2), np.float32)
        if self.opponent == "random":
            return np.stack([self.rngs[i].uniform(-1.0, 1.0, 2) for i in idx]).astype(np.float32)
        if self.opponent == "wind":  # world-frame direction into the robot's frame
            c, s = np.cos(self.heading[idx]), np.sin(self.heading[idx])
            w = self.wind[idx]
            return np.stack([c * w[:, 0] + s * w[:, 1], -s * w[:, 0] + c * w[:, 1]], -1).astype(np.float32)
        action, _ = self.model.predict(self.adv_obs[idx], deterministic=True)
        return np.clip(np.asarray(action, np.float32).reshape(len(idx), 2), -1.0, 1.0)

    def step_indices(self, idx, actions):
        idx = np.asarray(idx, dtype=np.int64)
        obs, rewards, terminated, truncated, infos = super().step_indices(idx, {"protagonist": actions, "adversary": self._push(idx)})
        self.adv_obs[idx] = obs["adversary"]
        return obs["protagonist"], rewards["protagonist"], terminated, truncated, infos["protagonist"]

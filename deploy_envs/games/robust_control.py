"""``deploy_envs/RobustNavigation-v0``: Robust Adversarial RL (Pinto et al. 2017) on SafeNavigation.

A PettingZoo parallel game built on :class:`~deploy_envs.envs.safety.navigation.SafeNavigationCore`:
the game core subclasses the navigation core and adds a bounded disturbance force to the
robot's motion before the navigation step runs, so every other rule (reward, cost, lidar,
goals, walls) is the navigation env's own. With ``disturbance=0`` the protagonist's
observations, rewards and infos equal ``SafeNavigation-v0``'s step for step.

:func:`train_robust` alternates SB3 PPO for the two roles (the loop of
:mod:`deploy_envs.games.selfplay`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.batched import validate_batch
from deploy_envs.core.validation import check_number
from deploy_envs.core.views import ParallelGameView
from deploy_envs.games.selfplay import SingleRoleEnv, as_policy
from deploy_envs.envs.safety.navigation import ACCEL, DAMPING, V_MAX, SafeNavigationCore

logger = logging.getLogger(__name__)

AGENTS = ("protagonist", "adversary")


class RobustNavigationCore(SafeNavigationCore):
    """## Description

    Robust Adversarial Reinforcement Learning (RARL; Pinto, Davidson, Sukthankar and Gupta
    2017, "Robust Adversarial Reinforcement Learning", ICML) on the constrained navigation
    task ``SafeNavigation-v0``: a *protagonist* drives the point robot to its goals while an
    *adversary* applies a bounded disturbance force to the robot. As in RARL, the adversary
    is rewarded by the protagonist's loss; here it is also rewarded by the safety cost it
    causes (pushing the robot into hazards), so a protagonist trained against it learns a
    policy that holds up under disturbances and model error.

    The disturbance is a force in the robot's own frame (``a[0]`` along the heading,
    ``a[1]`` to its left), clipped to the unit disc and scaled by ``disturbance`` times the
    robot's maximum forward force. It drives a damped world-frame push velocity with the
    robot's own dynamics, ``u <- 0.8 u + 0.01 * disturbance * f``, which is added to the
    robot's displacement each step (walls stop it). With ``disturbance=0`` the game is
    ``SafeNavigation-v0`` exactly.

    ## Agents

    ``["protagonist", "adversary"]``, acting simultaneously every step.

    ## Action Spaces

    * ``protagonist``: ``Box(-1, 1, (2,), float32)``, SafeNavigation's forward force and turn.
    * ``adversary``: ``Box(-1, 1, (2,), float32)``, the disturbance direction and strength in
      the robot's frame; vectors longer than 1 are scaled back to the unit disc.

    ## Observation Spaces

    * ``protagonist``: SafeNavigation's observation (velocity, gyro, goal / hazard / vase
      lidar rings; ``core.agent_obs_slices["protagonist"]``). It does not see the push.
    * ``adversary``: the same, followed by ``disturbance_velocity`` (2 values in [-1, 1]):
      the push velocity in the robot's frame over its largest value ``disturbance * 0.05``
      (zeros when ``disturbance=0``).

    ## Rewards

    * ``protagonist``: the navigation reward (progress toward the goal, plus ``reward_goal``
      on reaching it).
    * ``adversary``: ``-(navigation reward) + cost_weight * cost``, where ``cost`` is the
      navigation cost (1 for a step ending inside a hazard). ``cost_weight=0`` gives RARL's
      zero-sum game.

    ## Starting State

    SafeNavigation's starting state, with no push velocity.

    ## Episode End

    No termination; truncation after ``max_steps`` steps, for both agents.

    ## Info

    Per agent, SafeNavigation's info (``cost``, ``episode_cost``, ``cost_limit``,
    ``cost_limit_exceeded``, ``goals_reached``, ``goal_distance``, ``hazard_distance``) and
    ``disturbance_force`` (the norm of the applied force as a fraction of the robot's maximum
    force, in ``[0, disturbance]``).

    ## Arguments

    * ``disturbance``: the adversary's maximum force as a fraction of the robot's maximum
      forward force, >= 0 (default 0.5; Pinto et al. bound the adversary's forces well below
      the protagonist's actuation).
    * ``cost_weight``: weight of the navigation cost in the adversary's reward, >= 0
      (default 1.0).
    * All arguments of ``SafeNavigation-v0`` (``level``, ``max_steps``, ``cost_limit``, ...).

    ## Version History

    * v0: initial release.
    """

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *, disturbance: float = 0.5, cost_weight: float = 1.0, **nav_kwargs: Any) -> None:
        super().__init__(num_envs, render_mode, **nav_kwargs)
        self.disturbance = check_number("disturbance", disturbance, low=0.0, high=10.0)
        self.cost_weight = check_number("cost_weight", cost_weight, low=0.0)
        nav_box, nav_slices = self.single_observation_space, dict(self.obs_slices)
        n = nav_box.shape[0]
        adv_box = spaces.Box(
            np.concatenate([nav_box.low, np.full(2, -1.0, np.float32)]),
            np.concatenate([nav_box.high, np.full(2, 1.0, np.float32)]),
            dtype=np.float32,
        )
        self.observation_spaces = {"protagonist": nav_box, "adversary": adv_box}
        self.action_spaces = {a: spaces.Box(-1.0, 1.0, (2,), dtype=np.float32) for a in AGENTS}
        self.agent_obs_slices = {"protagonist": nav_slices, "adversary": {**nav_slices, "disturbance_velocity": slice(n, n + 2)}}
        self.push_vel = np.zeros((self.num_envs, 2))
        self.last_force = np.zeros(self.num_envs)

    # ------------------------------------------------------------------ API
    def reset_indices(self, idx, options=None):
        idx = np.asarray(idx, dtype=np.int64)
        self.push_vel[idx] = 0.0
        self.last_force[idx] = 0.0
        obs, info = super().reset_indices(idx, options)
        info["disturbance_force"] = self.last_force[idx].copy()
        return self._game_obs(idx, obs), {a: dict(info) for a in AGENTS}

    def validate_actions(self, actions: Any, batch: int) -> dict[str, np.ndarray]:
        """Check a dict ``{agent: batch of actions}``; raise ``ValueError`` naming the agent's action if one is outside its space."""
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict with keys {AGENTS}, got {type(actions).__name__}")
        missing = [a for a in AGENTS if a not in actions]
        extra = [a for a in actions if a not in AGENTS]
        if missing or extra:
            raise ValueError(f"actions must have exactly the keys {AGENTS}; missing {missing}, unknown {extra}")
        return {a: validate_batch(self.action_spaces[a], actions[a], batch, name=f"actions[{a!r}]") for a in AGENTS}

    def step_indices(self, idx, actions):
        """One step of copies ``idx`` with validated per-agent action batches; dicts keyed by agent."""
        idx = np.asarray(idx, dtype=np.int64)
        f = np.asarray(actions["adversary"], np.float64)
        norm = np.hypot(f[:, 0], f[:, 1])
        f = f / np.maximum(norm, 1.0)[:, None]  # unit disc
        c, s = np.cos(self.heading[idx]), np.sin(self.heading[idx])
        world = np.stack([c * f[:, 0] - s * f[:, 1], s * f[:, 0] + c * f[:, 1]], -1)
        u = DAMPING * self.push_vel[idx] + (ACCEL * self.disturbance) * world
        lim = self.arena_size
        pushed = self.pos[idx] + u
        out = np.abs(pushed) > lim
        self.pos[idx] = np.clip(pushed, -lim, lim)  # walls stop the push; the navigation step follows
        self.push_vel[idx] = np.where(out, 0.0, u)
        self.last_force[idx] = self.disturbance * np.minimum(norm, 1.0)
        obs, reward, terminated, truncated, info = super().step_indices(idx, actions["protagonist"])
        info["disturbance_force"] = self.last_force[idx].copy()
        rewards = {"protagonist": reward.astype(np.float64), "adversary": (-reward + self.cost_weight * info["cost"]).astype(np.float64)}
        infos = {a: {k: v.copy() for k, v in info.items()} for a in AGENTS}
        return self._game_obs(idx, obs), rewards, terminated, truncated, infos

    def _game_obs(self, idx: np.ndarray, nav_obs: np.ndarray) -> dict[str, np.ndarray]:
        k = len(idx)
        adv = np.empty((k, nav_obs.shape[1] + 2), np.float32)
        adv[:, : nav_obs.shape[1]] = nav_obs
        if self.disturbance > 0:
            c, s = np.cos(self.heading[idx]), np.sin(self.heading[idx])
            u = self.push_vel[idx] / (self.disturbance * V_MAX)
            ego = np.stack([c * u[:, 0] + s * u[:, 1], -s * u[:, 0] + c * u[:, 1]], -1)
            adv[:, nav_obs.shape[1] :] = np.clip(ego, -1.0, 1.0)
        else:
            adv[:, nav_obs.shape[1] :] = 0.0
        return {"protagonist": nav_obs, "adversary": adv}

    def state_of(self, idx: np.ndarray) -> np.ndarray:
        """Global state of copies ``idx``: the adversary's observation (which contains the protagonist's)."""
        idx = np.asarray(idx, dtype=np.int64)
        return self._game_obs(idx, self._observe(idx))["adversary"]


class RobustNavigationParallelEnv(ParallelGameView):
    __doc__ = RobustNavigationCore.__doc__

    metadata = {"name": "robust_navigation_v0", "render_modes": ["rgb_array", "ansi"], "is_parallelizable": True, "render_fps": 30}
    core_class = RobustNavigationCore

    def build_state_space(self) -> spaces.Box:
        return self.observation_spaces["adversary"]  # the adversary's observation contains the protagonist's


def parallel_env(**kwargs: Any) -> RobustNavigationParallelEnv:
    """Build ``RobustNavigation-v0`` as a PettingZoo ``ParallelEnv`` (keyword arguments as in :class:`RobustNavigationCore`)."""
    return RobustNavigationParallelEnv(**kwargs)


# --------------------------------------------------------------------------
# RARL: alternating PPO for the two roles (the loop of games/selfplay.py)
# --------------------------------------------------------------------------
def evaluate_protagonist(game: RobustNavigationParallelEnv, protagonist: Any, adversary: Any, episodes: int = 5, seed: int = 0) -> dict[str, float]:
    """Mean episode return, cost and goals of ``protagonist`` against ``adversary`` (callables or SB3 models)."""
    pro, adv = as_policy(protagonist, deterministic=True), as_policy(adversary, deterministic=True)
    returns, costs, goals = [], [], []
    for e in range(episodes):
        obs, _ = game.reset(seed=seed + e)
        ret = 0.0
        info: dict[str, Any] = {}
        while game.agents:
            obs, rew, _, _, infos = game.step({"protagonist": pro(obs["protagonist"]), "adversary": adv(obs["adversary"])})
            ret += rew["protagonist"]
            info = infos["protagonist"]
        returns.append(ret)
        costs.append(info["episode_cost"])
        goals.append(info["goals_reached"])
    return {"return": float(np.mean(returns)), "episode_cost": float(np.mean(costs)), "goals_reached": float(np.mean(goals))}


def train_robust(
    iterations: int = 3,
    timesteps_per_role: int = 4096,
    game_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    out_dir: str | Path = "rarl_navigation",
    *,
    eval_episodes: int = 3,
    ppo_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """RARL (Pinto et al. 2017, Algorithm 1) with SB3 PPO: alternate protagonist and adversary, each against the other frozen.

    Each iteration trains the protagonist for ``timesteps_per_role`` steps against the
    frozen adversary, then the adversary against the frozen new protagonist, and evaluates
    the protagonist (deterministic) with no disturbance and against the adversary. Saves
    ``protagonist.zip``, ``adversary.zip`` and ``results.json`` in ``out_dir``.
    """
    from stable_baselines3 import PPO

    from deploy_envs.games.selfplay import SB3Policy

    iterations = check_number("iterations", iterations, low=1, integer=True)
    timesteps_per_role = check_number("timesteps_per_role", timesteps_per_role, low=1, integer=True)
    seed = check_number("seed", seed, integer=True)
    game_kwargs = dict(game_kwargs or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zero = np.zeros(2, np.float32)

    pro_env = SingleRoleEnv(parallel_env(**game_kwargs), "protagonist", opponent_policy=lambda obs: zero)
    adv_env = SingleRoleEnv(parallel_env(**game_kwargs), "adversary", opponent_policy=lambda obs: zero)
    eval_game = parallel_env(**game_kwargs)
    n_steps = max(16, min(2048, timesteps_per_role))
    ppo = {"n_steps": n_steps, "batch_size": min(64, n_steps), "verbose": 0, "device": "cpu", **(ppo_kwargs or {})}
    protagonist = PPO("MlpPolicy", pro_env, seed=seed, **ppo)
    adversary = PPO("MlpPolicy", adv_env, seed=seed + 1, **ppo)

    history = []
    for k in range(iterations):
        pro_env.set_opponent(SB3Policy(adversary))
        protagonist.learn(timesteps_per_role, reset_num_timesteps=False)
        adv_env.set_opponent(SB3Policy(protagonist))
        adversary.learn(timesteps_per_role, reset_num_timesteps=False)
        row: dict[str, Any] = {"iteration": k + 1}
        for name, opp in (("no_disturbance", lambda obs: zero), ("vs_adversary", adversary)):
            res = evaluate_protagonist(eval_game, protagonist, opp, eval_episodes, seed=10_000 + seed)
            row.update({f"{key}_{name}": v for key, v in res.items()})
        history.append(row)
        logger.info("RARL iteration %d: %s", k + 1, row)

    pro_path, adv_path = out / "protagonist.zip", out / "adversary.zip"
    protagonist.save(pro_path)
    adversary.save(adv_path)
    result = {"iterations": history, "protagonist_model": str(pro_path), "adversary_model": str(adv_path), "game_kwargs": game_kwargs, "timesteps_per_role": timesteps_per_role, "seed": seed}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


__all__ = ["AGENTS", "RobustNavigationCore", "RobustNavigationParallelEnv", "evaluate_protagonist", "parallel_env", "train_robust"]

"""Reference agents of ``deploy_envs/SafeNavigation-v0``: a scripted safe controller and PPO-Lagrangian.

* :class:`SafeNavigationController` steers to the goal seen on the goal lidar while a
  potential field pushes it away from hazards seen on the hazard lidar
  (``hazard_gain=0`` gives the greedy goal seeker that ignores them).
* PPO-Lagrangian (Ray et al. 2019, "Benchmarking Safe Exploration in Deep Reinforcement
  Learning"; Stooke et al. 2020, "Responsive Safety in RL by PID Lagrangian Methods"):
  the constrained problem ``max J_r s.t. J_c <= d`` is solved through its Lagrangian
  ``min_{lambda >= 0} max_pi J_r - lambda (J_c - d)``. Stable-Baselines3's PPO does the
  inner maximisation unchanged, on the penalised reward ``(r - lambda c) / (1 + lambda)``
  (:class:`~deploy_envs.training.lagrangian.LagrangianRewardVecEnv`, the reward form of OmniSafe's PPO-Lag advantage
  ``(A_r - lambda A_c) / (1 + lambda)``); after every rollout :class:`~deploy_envs.training.lagrangian.LagrangeCallback`
  takes a projected gradient-ascent step on ``lambda`` with the mean episode cost of the
  episodes that ended in it (:class:`~deploy_envs.training.lagrangian.LagrangeMultiplier`, Adam with OmniSafe's defaults:
  initial value 0.001, learning rate 0.035). It is a layer on SB3's PPO, not a rewrite.
  One critic learns the penalised return; OmniSafe keeps a separate cost critic.

:func:`train_lagrangian_ppo` trains either agent through the one SB3 entry,
:func:`deploy_envs.training.sb3.train_sb3_agent` with ``cost=CostConstraint(...)`` (``lagrangian=False``: plain PPO on the
same budget) into the agent zoo with a card; ``python -m deploy_envs.topics.navigation.baselines``
trains the two shipped agents ``safenav-ppo`` and ``safenav-ppo-lagrangian``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploy_envs.core.agents import Agent, register_baseline
from deploy_envs.core.validation import check_number, check_positive

if TYPE_CHECKING:
    from deploy_envs.agent_zoo import AgentCard


ENV_ID = "deploy_envs/SafeNavigation-v0"

#: the short-horizon variant the shipped agents are trained and evaluated on: level 1 with
#: 200-step episodes and the cost limit scaled from OmniSafe's 25 per 1000 steps
SHORT_HORIZON = {"level": 1, "max_steps": 200, "cost_limit": 5.0}


# ------------------------------------------------------------ scripted agent
class SafeNavigationController(Agent):
    """Goal seeking plus hazard repulsion from the lidar rings (no learning, no privileged state).

    The goal's bearing and distance are read off the aliased goal lidar (the peak bin and
    the share of its upper neighbour); each hazard-lidar bin whose hazard edge is within
    ``influence`` pushes the desired direction away from it with weight
    ``hazard_gain * (1 - edge / influence)^2`` (a potential field, Khatib 1986). The robot
    turns toward the desired direction and drives forward when roughly facing it.
    """

    name = "safe_controller"

    def __init__(self, hazard_gain: float = 3.0, influence: float = 0.3, turn_gain: float = 3.0) -> None:
        self.hazard_gain = check_number("hazard_gain", hazard_gain, low=0.0)
        self.influence = check_positive("influence", influence)
        self.turn_gain = check_positive("turn_gain", turn_gain)

    def setup(self, env: Any) -> None:
        core = env.unwrapped.core
        if not hasattr(core, "obs_slices") or "hazards_lidar" not in core.obs_slices:
            raise ValueError(f"{type(self).__name__} works on {ENV_ID} only (it reads the goal and hazard lidar rings)")
        self.goal_sl = core.obs_slices["goal_lidar"]
        self.haz_sl = core.obs_slices["hazards_lidar"]
        self.bins = core.lidar_bins
        self.max_dist = core.lidar_max_dist
        self.hazard_size = core.hazard_size
        # constrained vases repel like hazards (with their own size)
        self.vase_sl = core.obs_slices["vases_lidar"] if core.constrain_vases and core.num_vases else None
        self.vase_size = core.vase_size
        self.centres = (np.arange(self.bins) + 0.5) * (2 * math.pi / self.bins)

    def act(self, obs, episode_start):
        obs = np.asarray(obs, dtype=np.float64)
        n, B = len(obs), self.bins
        g = obs[:, self.goal_sl]
        k = g.argmax(1)
        peak = g[np.arange(n), k]
        up = g[np.arange(n), (k + 1) % B]
        alias = np.where(peak > 0, np.clip(up / np.maximum(peak, 1e-9), 0, 1), 0.5)
        goal_ang = (k + alias) * (2 * math.pi / B)
        desired = np.stack([np.cos(goal_ang), np.sin(goal_ang)], -1)
        unseen = peak <= 0  # goal out of lidar range: sweep forward in a wide arc to find it
        desired[unseen] = [math.cos(0.5), math.sin(0.5)]
        units = np.stack([np.cos(self.centres), np.sin(self.centres)], -1)
        push = self._push(obs[:, self.haz_sl], self.hazard_size, units)
        if self.vase_sl is not None:
            push += self._push(obs[:, self.vase_sl], self.vase_size, units)
        vec = desired + push
        err = np.arctan2(vec[:, 1], vec[:, 0])
        err = (err + math.pi) % (2 * math.pi) - math.pi
        turn = np.clip(self.turn_gain * err, -1.0, 1.0)
        forward = np.clip(np.cos(err), 0.0, 1.0) ** 2
        return np.stack([forward, turn], -1).astype(np.float32)

    def _push(self, ring: np.ndarray, size: float, units: np.ndarray) -> np.ndarray:
        """Repulsion ``(n, 2)`` from the objects on a lidar ring whose edge is within ``influence``."""
        edge = (1.0 - ring) * self.max_dist - size
        w = np.where(ring > 0, np.clip(1.0 - edge / self.influence, 0.0, None) ** 2, 0.0) * self.hazard_gain
        return -(w[..., None] * units).sum(1)


register_baseline(
    "safe_controller",
    SafeNavigationController,
    envs=(ENV_ID,),
    summary="scripted: steer to the goal on the goal lidar, repelled from hazards on the hazard lidar",
)
register_baseline(
    "goal_seeker",
    lambda **kw: SafeNavigationController(hazard_gain=0.0, **kw),
    envs=(ENV_ID,),
    summary="scripted: steer straight to the goal on the goal lidar, ignoring hazards",
)


#: PPO settings of the shipped agents (small net, short rollouts for the 200-step variant)
PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": 256,
    "batch_size": 512,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "ent_coef": 0.0,
    "policy_kwargs": {"net_arch": [64, 64]},
}


def train_lagrangian_ppo(
    *,
    name: str,
    out_dir: Path | None = None,
    env_kwargs: dict[str, Any] | None = None,
    lagrangian: bool = True,
    cost_limit: float | None = None,
    timesteps: int = 200_000,
    num_envs: int = 16,
    seed: int = 0,
    lagrange_init: float = 0.001,
    lagrange_lr: float = 0.035,
    hyperparameters: dict[str, Any] | None = None,
    eval_episodes: int = 100,
    scenario: str | None = "safety_lagrangian",
) -> AgentCard:
    """Train PPO (``lagrangian=False``) or PPO-Lagrangian on SafeNavigation; save model and card.

    ``cost_limit`` (default: the env's ``cost_limit``) is the constraint the multiplier
    enforces. The card's scores are an evaluation on ``eval_episodes`` episodes
    (deterministic policy) and the training history of episode cost and ``lambda``.
    """
    from deploy_envs.agent_zoo import agents_dir
    from deploy_envs.training.lagrangian import CostConstraint
    from deploy_envs.training.sb3 import train_sb3_agent

    env_kwargs = {**SHORT_HORIZON, **(env_kwargs or {})}
    limit = float(env_kwargs.get("cost_limit", 25.0) if cost_limit is None else cost_limit)
    timesteps = check_positive("timesteps", timesteps, integer=True)
    hyper = {**PPO_DEFAULTS, **(hyperparameters or {})}
    algo = "PPO-Lagrangian" if lagrangian else "PPO (unconstrained)"
    notes = (
        f"{algo} on SafeNavigation-v0 {env_kwargs}. Reward: progress to the goal plus 1 per goal; "
        f"cost: 1 per step inside a hazard; cost limit {limit:g} per episode. "
        + (
            f"Lagrange multiplier on the mean episode cost (init {lagrange_init}, Adam lr {lagrange_lr}), "
            "PPO trains on (r - lambda c)/(1 + lambda) (Ray et al. 2019; Stooke et al. 2020). "
            if lagrangian
            else "Trained on the reward alone. "
        )
        + "Trained by deploy_envs.topics.navigation.baselines.train_lagrangian_ppo; load with load_agent (algorithm PPO)."
    )
    return train_sb3_agent(
        ENV_ID, name=name, out_dir=Path(out_dir) if out_dir is not None else agents_dir() / name, env_kwargs=env_kwargs,
        algorithm="PPO", timesteps=timesteps, num_envs=num_envs, seed=seed, hyperparameters=hyper,
        eval_episodes=eval_episodes, scenario=scenario, notes=notes, device="cpu",
        cost=CostConstraint(limit, lagrangian=lagrangian, init=lagrange_init, lr=lagrange_lr, digits=2),
    )


def main(argv: list[str] | None = None) -> None:
    """Train the two shipped agents (``safenav-ppo`` and ``safenav-ppo-lagrangian``) into the zoo."""
    from deploy_envs.training.lagrangian import ppo_and_lagrangian_main

    ppo_and_lagrangian_main(argv, description="train PPO and PPO-Lagrangian on SafeNavigation-v0 (short-horizon level 1)",
                            timesteps=300_000, names=("safenav-ppo", "safenav-ppo-lagrangian"), train=train_lagrangian_ppo,
                            metrics=("return", "episode_cost"), digits=2)


if __name__ == "__main__":
    main()

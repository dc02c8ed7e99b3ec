"""``deploy_envs/RobustNavigation-v0``: Robust Adversarial RL (Pinto et al. 2017) on SafeNavigation.

A PettingZoo parallel game built on :class:`~deploy_envs.topics.navigation.safe_navigation.SafeNavigationCore`:
the game core subclasses the navigation core and adds a bounded disturbance force to the
robot's motion before the navigation step runs, so every other rule (reward, cost, lidar,
goals, walls) is the navigation env's own. With ``disturbance=0`` the protagonist's
observations, rewards and infos equal ``SafeNavigation-v0``'s step for step.

:func:`train_robust` alternates SB3 PPO for the two roles (the loop of
:mod:`deploy_envs.training.selfplay`), on one game or on a batch of copies
(:class:`RoleVecEnv`); :func:`ship_rarl_agents` (``python -m
deploy_envs.topics.navigation.robust_navigation --rarl`` / ``--baseline``) trains the zoo's
``rarl-protagonist`` and its no-disturbance control ``rarl-baseline``, which
``scenarios/rarl_disturbance.yaml`` tests on ``DisturbedNavigation-v0``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from deploy_envs.core.games import GameCore
from deploy_envs.core.registration import make_game
from deploy_envs.core.validation import check_number
from deploy_envs.core.views import ParallelGameView
from deploy_envs.topics.navigation.safe_navigation import ACCEL, DAMPING, V_MAX, SafeNavigationCore
from deploy_envs.training.roles import RoleEnv
from deploy_envs.training.roles import RoleVecEnv as GameRoleVecEnv
from deploy_envs.training.selfplay import as_policy

logger = logging.getLogger(__name__)

AGENTS = ("protagonist", "adversary")
GAME_ID = "deploy_envs/RobustNavigation-v0"


class RobustNavigationCore(SafeNavigationCore, GameCore):
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
      on reaching it, minus ``cost_penalty * cost`` when SafeNavigation's ``cost_penalty`` is
      set: the shipped RARL experiment uses 2, so being pushed into a hazard hurts).
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

    def state_space(self) -> spaces.Box:
        return self.observation_spaces["adversary"]  # the adversary's observation contains the protagonist's

    def state_of(self, idx: np.ndarray) -> np.ndarray:
        """Global state of copies ``idx``: the adversary's observation (which contains the protagonist's)."""
        idx = np.asarray(idx, dtype=np.int64)
        return self._game_obs(idx, self._observe(idx))["adversary"]


# --------------------------------------------------------------------------
# RARL: alternating PPO for the two roles (the loop of training/selfplay.py)
# --------------------------------------------------------------------------
def evaluate_protagonist(game: ParallelGameView, protagonist: Any, adversary: Any, episodes: int = 5, seed: int = 0) -> dict[str, float]:
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


class RoleVecEnv(GameRoleVecEnv):
    """One role of ``RobustNavigation-v0`` as an SB3 ``VecEnv`` over ``num_envs`` batched copies.

    The generic role adapter (:class:`deploy_envs.training.roles.RoleVecEnv`) for this
    game: the other role is played on the whole batch by ``opponent`` (a callable on a
    batch of its observations, or an SB3 model, of which a frozen copy is taken). Copy
    ``i`` is seeded ``seed + i``. Every copy runs ``max_steps`` steps, so copies finish
    together and are reset together (SB3's auto-reset convention: the last observation
    is in ``infos[i]["terminal_observation"]``).
    """

    def __init__(self, role: str, opponent: Any, num_envs: int = 16, seed: int = 0, **game_kwargs: Any) -> None:
        from deploy_envs.core.validation import check_choice

        role = check_choice("role", role, AGENTS)
        other = AGENTS[1 - AGENTS.index(role)]
        super().__init__(GAME_ID, role, {other: opponent}, num_envs=num_envs, seed=seed, game_kwargs=game_kwargs)

    def set_opponent(self, opponent: Any) -> None:
        """Set the other role's fixed policy."""
        self.set_opponents({self.others[0]: opponent})


def train_robust(
    iterations: int = 3,
    timesteps_per_role: int = 4096,
    game_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    out_dir: str | Path = "rarl_navigation",
    *,
    eval_episodes: int = 3,
    ppo_kwargs: dict[str, Any] | None = None,
    num_envs: int = 1,
    adversarial: bool = True,
    init_protagonist: str | Path | None = None,
    trust_agent_code: bool = False,
) -> dict[str, Any]:
    """RARL (Pinto et al. 2017, Algorithm 1) with SB3 PPO: alternate protagonist and adversary, each against the other frozen.

    Each iteration trains the protagonist for ``timesteps_per_role`` steps against the
    frozen adversary, then the adversary against the frozen new protagonist, and evaluates
    the protagonist (deterministic) with no disturbance and against the adversary. Saves
    ``protagonist.zip``, ``adversary.zip`` and ``results.json`` in ``out_dir``.

    ``num_envs > 1`` trains each role on that many batched copies of the game
    (:class:`RoleVecEnv`). ``adversarial=False`` is the control of Pinto et al.: the same
    loop and budget, but the protagonist always trains against a zero disturbance (the
    adversary is still trained against it, to evaluate it with). ``init_protagonist`` (a
    saved SB3 PPO zip on SafeNavigation's observation) starts the protagonist from a
    trained navigation policy instead of from scratch.
    """
    from stable_baselines3 import PPO

    from deploy_envs.training.selfplay import SB3Policy

    iterations = check_number("iterations", iterations, low=1, integer=True)
    timesteps_per_role = check_number("timesteps_per_role", timesteps_per_role, low=1, integer=True)
    seed = check_number("seed", seed, integer=True)
    num_envs = check_number("num_envs", num_envs, low=1, integer=True)
    game_kwargs = dict(game_kwargs or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    zero = np.zeros(2, np.float32)

    def no_push(obs: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(obs)[:-1] + (2,), np.float32)

    if num_envs == 1:
        pro_env = RoleEnv(make_game(GAME_ID, **game_kwargs), "protagonist", opponent_policy=lambda obs: zero)
        adv_env = RoleEnv(make_game(GAME_ID, **game_kwargs), "adversary", opponent_policy=lambda obs: zero)
    else:
        pro_env = RoleVecEnv("protagonist", no_push, num_envs, seed, **game_kwargs)
        adv_env = RoleVecEnv("adversary", no_push, num_envs, seed + 10_000, **game_kwargs)
    eval_game = make_game(GAME_ID, **game_kwargs)
    n_steps = max(16, min(2048, timesteps_per_role // num_envs))
    ppo = {"n_steps": n_steps, "batch_size": min(64, n_steps * num_envs), "verbose": 0, "device": "cpu", **(ppo_kwargs or {})}
    if init_protagonist is not None:
        from deploy_envs.trust import check_agent_path

        check_agent_path(init_protagonist, trust_agent_code, what="init_protagonist")  # an SB3 zip can execute code
        protagonist = PPO.load(str(init_protagonist), env=pro_env, device="cpu", **{k: v for k, v in ppo.items() if k not in ("policy_kwargs", "device")})
        protagonist.set_random_seed(seed)
    else:
        protagonist = PPO("MlpPolicy", pro_env, seed=seed, **ppo)
    adversary = PPO("MlpPolicy", adv_env, seed=seed + 1, **ppo)

    history = []
    for k in range(iterations):
        pro_env.set_opponent(SB3Policy(adversary) if adversarial else no_push)
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
    result = {"iterations": history, "protagonist_model": str(pro_path), "adversary_model": str(adv_path), "game_kwargs": game_kwargs, "timesteps_per_role": timesteps_per_role, "seed": seed, "num_envs": num_envs, "adversarial": adversarial, "init_protagonist": None if init_protagonist is None else str(init_protagonist)}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


#: the shipped RARL experiment: short-horizon SafeNavigation level 1 whose reward charges 2 per step
#: in a hazard, and an adversary pushing with up to 3/4 of the robot's force
RARL_GAME_KWARGS: dict[str, Any] = {"level": 1, "max_steps": 200, "cost_limit": 5.0, "disturbance": 0.75, "cost_weight": 1.0, "cost_penalty": 2.0}
RARL_PPO_KWARGS: dict[str, Any] = {"n_steps": 256, "batch_size": 512, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.0, "policy_kwargs": {"net_arch": [64, 64]}}


def ship_rarl_agents(adversarial: bool, *, iterations: int = 10, timesteps_per_role: int = 32_768, num_envs: int = 16, seed: int = 0, root: str | Path | None = None, init: str | None = "safenav-ppo-lagrangian",
                     trust_agent_code: bool = False) -> dict[str, Any]:
    """Train with :func:`train_robust` and save protagonist and adversary to the zoo with cards.

    ``adversarial=True`` ships ``rarl-protagonist`` / ``rarl-adversary``; ``False`` ships the
    control ``rarl-baseline`` (trained with no disturbance, same loop and budget) and
    ``rarl-baseline-adversary`` (an adversary trained against it). The protagonist's card
    names ``SafeNavigation-v0`` (it acts on SafeNavigation's observation). Both protagonists
    start from the zoo's ``init`` policy (``safenav-ppo-lagrangian``: PPO-Lagrangian trained 1M
    steps on the same SafeNavigation configuration, a policy that already keeps out of the
    hazards), so the budget goes into learning how far from them to stay under a push.
    """
    import shutil
    import tempfile

    from deploy_envs.agent_zoo import agents_dir, resolve_agent_folder, write_card
    from deploy_envs.training.cards import build_card

    root = Path(root) if root is not None else agents_dir()
    init_zip = None if init is None else resolve_agent_folder(init) / "model.zip"
    if init_zip is not None:
        from deploy_envs.trust import check_agent_path

        check_agent_path(init_zip.parent, trust_agent_code, what="init")  # an SB3 zip can execute code when loaded
    pro_name, adv_name = ("rarl-protagonist", "rarl-adversary") if adversarial else ("rarl-baseline", "rarl-baseline-adversary")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_robust(iterations, timesteps_per_role, RARL_GAME_KWARGS, seed, tmp, eval_episodes=10, ppo_kwargs=RARL_PPO_KWARGS, num_envs=num_envs, adversarial=adversarial, init_protagonist=init_zip, trust_agent_code=trust_agent_code)
        seconds = time.perf_counter() - start
        for name in (pro_name, adv_name):
            (root / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "protagonist.zip", root / pro_name / "model.zip")
        shutil.copy(Path(tmp) / "adversary.zip", root / adv_name / "model.zip")
    nav_kwargs = {k: v for k, v in RARL_GAME_KWARGS.items() if k not in ("disturbance", "cost_weight")}
    how = f"`python -m deploy_envs.topics.navigation.robust_navigation --{'rarl' if adversarial else 'baseline'}`"
    budget = f"{iterations} iterations x {timesteps_per_role} steps per role, {num_envs} batched copies" + (f", protagonist started from zoo agent {init}" if init else "")
    training = {"iterations (protagonist evaluated on 10 episodes after each)": result["iterations"]}
    pro_notes = (
        ("RARL protagonist (Pinto et al. 2017): PPO trained on RobustNavigation-v0 against an adversary that pushes the robot "
         f"(disturbance {RARL_GAME_KWARGS['disturbance']} of the robot's force, adversary rewarded by the protagonist's loss plus its cost; "
         f"the protagonist's reward charges {RARL_GAME_KWARGS['cost_penalty']} per step in a hazard), "
         "the two trained alternately. ")
        if adversarial
        else "Control for RARL: the same PPO, loop and budget, but trained with no disturbance (plain SafeNavigation). "
    ) + f"Acts on SafeNavigation-v0 {nav_kwargs} observations. {budget}; trained by {how}; scenario rarl_disturbance."
    adv_notes = f"Adversary of RobustNavigation-v0 {RARL_GAME_KWARGS} trained (alternating PPO) against {pro_name}; acts on the game's adversary observation. Trained by {how}."
    common = {"algorithm": "PPO", "hyperparameters": RARL_PPO_KWARGS, "timesteps": iterations * timesteps_per_role, "num_envs": num_envs, "seed": seed, "scenario": "rarl_disturbance", "train_seconds": seconds, "device": "cpu"}
    write_card(root / pro_name, build_card(name=pro_name, env_id="deploy_envs/SafeNavigation-v0", env_kwargs=nav_kwargs, training=training, notes=pro_notes, **common))
    write_card(root / adv_name, build_card(name=adv_name, env_id="deploy_envs/RobustNavigation-v0", env_kwargs=RARL_GAME_KWARGS, notes=adv_notes, **common))
    return result


def main(argv: list[str] | None = None) -> None:
    """Train and ship the RARL protagonist (``--rarl``) or its no-disturbance control (``--baseline``)."""
    import argparse

    import torch

    p = argparse.ArgumentParser(description="RARL on RobustNavigation-v0 (Pinto et al. 2017) and its control")
    p.add_argument("--rarl", action="store_true")
    p.add_argument("--baseline", action="store_true")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--timesteps-per-role", type=int, default=32_768)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    for adversarial, wanted in ((True, args.rarl), (False, args.baseline)):
        if wanted:
            ship_rarl_agents(adversarial, iterations=args.iterations, timesteps_per_role=args.timesteps_per_role, seed=args.seed)


if __name__ == "__main__":
    main()


__all__ = ["AGENTS", "GAME_ID", "RobustNavigationCore", "RoleVecEnv", "evaluate_protagonist", "train_robust"]

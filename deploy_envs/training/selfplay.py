"""Alternating self-play for ``AttackDefense-v0``: a baseline, readable top to bottom.

Each role is trained with stable-baselines3 PPO against a *frozen* copy of the
other role, and the roles alternate for ``iterations`` rounds::

    defender_0 = untrained PPO policy
    for k in range(iterations):
        attacker_{k+1} = PPO(attacker_k) trained against frozen defender_k
        defender_{k+1} = PPO(defender_k) trained against frozen attacker_{k+1}
        evaluate attacker_{k+1} vs defender_{k+1} (and FGSM vs defender_{k+1})

The pieces:

* :class:`~deploy_envs.training.roles.RoleEnv` (the batched role adapter at one
  copy) turns the two-player game into a ``gymnasium.Env`` for one role; the other
  role is played by a frozen policy (a callable on a batch of observations, or an
  SB3 model).
* Fixed reference policies: :class:`FGSMAttacker` (the sign of the observed
  gradient, i.e. FGSM at the full budget), :class:`RandomPolicy`,
  :class:`FixedDefense` (always the same defense).
* :func:`evaluate` plays episodes between two policies and reports the fool rate
  and how often each defense was chosen.
* :func:`train_alternating` is the loop above; it saves the final models.
"""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from deploy_envs.core.registration import make_game
from deploy_envs.core.validation import check_choice, check_number
from deploy_envs.core.views import ParallelGameView
from deploy_envs.topics.evasion.attack_defense import AGENTS

GAME_ID = "deploy_envs/AttackDefense-v0"

logger = logging.getLogger(__name__)

Policy = Callable[[np.ndarray], Any]
"""A frozen policy: maps one observation of its role to one action."""


def other(role: str) -> str:
    return "defender" if role == "attacker" else "attacker"


# --------------------------------------------------------------------------
# Fixed reference policies
# --------------------------------------------------------------------------
class FGSMAttacker:
    """FGSM (Goodfellow et al. 2015) at the full budget: the action is the observed gradient sign."""

    def __init__(self, game: ParallelGameView) -> None:
        slices = game.core.obs_slices["attacker"]
        if "gradient" not in slices:
            raise ValueError("FGSMAttacker needs the gradient in the attacker's observation; build the game with attacker_white_box=True")
        self.grad = slices["gradient"]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, np.float32)[..., self.grad].copy()


class FixedDefense:
    """Always the same defense, given by name (``"none"``, ``"robust_model"``, ...) or index."""

    def __init__(self, game: ParallelGameView, defense: str | int) -> None:
        names = game.core.defenses
        if isinstance(defense, str):
            self.index = names.index(check_choice("defense", defense, names))
        else:
            self.index = check_number("defense", defense, low=0, high=len(names) - 1, integer=True)
        self.name = names[self.index]

    def __call__(self, obs: np.ndarray) -> int:
        return self.index


class RandomPolicy:
    """Uniform random actions from a space, seeded."""

    def __init__(self, space: gym.spaces.Space, seed: int | None = None) -> None:
        self.space = copy.deepcopy(space)
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        self.space.seed(seed)

    def __call__(self, obs: np.ndarray) -> Any:
        return self.space.sample()


class SB3Policy:
    """A frozen copy of an SB3 model's policy as a callable (sampling unless ``deterministic``).

    Once :meth:`seed` is called, sampling uses a torch RNG state of its own (the
    global one is left untouched), so a seeded episode replays exactly.
    """

    def __init__(self, model: Any, deterministic: bool = False) -> None:
        policy = model.policy if hasattr(model, "policy") else model
        # a fresh policy with the same weights (as SB3's own save/load does): later
        # training of ``model`` does not change this copy
        self.policy = type(policy)(**policy._get_constructor_parameters())
        self.policy.load_state_dict(policy.state_dict())
        self.policy.set_training_mode(False)
        self.deterministic = deterministic
        self._rng_state: torch.Tensor | None = None

    def seed(self, seed: int | None) -> None:
        self._rng_state = None if seed is None else torch.Generator().manual_seed(int(seed)).get_state()

    def __call__(self, obs: np.ndarray) -> Any:
        if self.deterministic or self._rng_state is None:
            return self.policy.predict(obs, deterministic=self.deterministic)[0]
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            action, _ = self.policy.predict(obs, deterministic=False)
            self._rng_state = torch.get_rng_state()
        return action


def as_policy(policy: Any, deterministic: bool = False) -> Policy:
    """A callable policy from an SB3 model (frozen copy) or a callable (as is)."""
    if hasattr(policy, "policy") and hasattr(policy, "predict"):
        return SB3Policy(policy, deterministic)
    if callable(policy):
        return policy
    raise ValueError(f"opponent_policy={policy!r} must be a callable obs -> action or a stable-baselines3 model")


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------
def evaluate(game: ParallelGameView, attacker: Any, defender: Any, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """Play ``episodes`` episodes; return fool rate, mean rewards per round and defense frequencies."""
    attacker, defender = as_policy(attacker), as_policy(defender)
    for k, policy in enumerate((attacker, defender)):
        if hasattr(policy, "seed"):
            policy.seed(seed + k)
    names = game.core.defenses
    fooled, counts = [], np.zeros(len(names), np.int64)
    rewards = {a: [] for a in AGENTS}
    for e in range(episodes):
        obs, _ = game.reset(seed=seed + e)
        while game.agents:
            actions = {"attacker": attacker(obs["attacker"]), "defender": defender(obs["defender"])}
            obs, rew, _, _, infos = game.step(actions)
            fooled.append(infos["attacker"]["fooled"])
            counts[infos["defender"]["defense"]] += 1
            for a in AGENTS:
                rewards[a].append(rew[a])
    n = max(1, len(fooled))
    return {
        "fool_rate": float(np.mean(fooled)),
        "attacker_reward": float(np.mean(rewards["attacker"])),
        "defender_reward": float(np.mean(rewards["defender"])),
        "defense_frequencies": {name: float(c / n) for name, c in zip(names, counts)},
        "rounds": len(fooled),
    }


# --------------------------------------------------------------------------
# Alternating training
# --------------------------------------------------------------------------
def train_alternating(
    game_kwargs: dict[str, Any] | None = None,
    iterations: int = 3,
    timesteps_per_role: int = 4096,
    seed: int = 0,
    out_dir: str | Path = "selfplay_attack_defense",
    *,
    eval_episodes: int = 10,
    ppo_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train attacker and defender with PPO, each against a frozen copy of the other, alternating.

    Returns ``{"iterations": [...], "attacker_model": path, "defender_model": path, ...}``
    where each iteration's entry holds the evaluation of the new attacker against
    the new defender (``fool_rate``, mean rewards, ``defense_frequencies``) and,
    as a yardstick, the fool rate of FGSM against the new defender. The final
    models are saved as ``attacker.zip`` and ``defender.zip`` in ``out_dir``, the
    results as ``results.json``.
    """
    from stable_baselines3 import PPO

    iterations = check_number("iterations", iterations, low=1, integer=True)
    timesteps_per_role = check_number("timesteps_per_role", timesteps_per_role, low=1, integer=True)
    seed = check_number("seed", seed, integer=True)
    game_kwargs = dict(game_kwargs or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    from deploy_envs.training.roles import RoleEnv

    # 1. one game per learner (each RoleEnv owns its game's state), one for evaluation
    att_env = RoleEnv(make_game(GAME_ID, **game_kwargs), "attacker", opponent_policy=lambda obs: 0)
    def_env = RoleEnv(make_game(GAME_ID, **game_kwargs), "defender", opponent_policy=lambda obs: 0)
    eval_game = make_game(GAME_ID, **game_kwargs)
    fgsm = FGSMAttacker(eval_game) if eval_game.core.attacker_white_box else None

    # 2. the two learners
    n_steps = max(16, min(2048, timesteps_per_role))
    ppo = {"n_steps": n_steps, "batch_size": min(64, n_steps), "verbose": 0, "device": "cpu", **(ppo_kwargs or {})}
    attacker = PPO("MlpPolicy", att_env, seed=seed, **ppo)
    defender = PPO("MlpPolicy", def_env, seed=seed + 1, **ppo)

    history = []
    for k in range(iterations):
        # 3. attacker learns against the frozen current defender
        att_env.set_opponent(SB3Policy(defender))
        attacker.learn(timesteps_per_role, reset_num_timesteps=False)

        # 4. defender learns against the frozen new attacker
        def_env.set_opponent(SB3Policy(attacker))
        defender.learn(timesteps_per_role, reset_num_timesteps=False)

        # 5. evaluate the new pair (stochastic policies: in a simultaneous game the mixed strategy is the strategy)
        row = {"iteration": k + 1, **evaluate(eval_game, SB3Policy(attacker), SB3Policy(defender), eval_episodes, seed=10_000 + seed)}
        if fgsm is not None:
            row["fgsm_fool_rate_vs_defender"] = evaluate(eval_game, fgsm, SB3Policy(defender), eval_episodes, seed=10_000 + seed)["fool_rate"]
        history.append(row)
        logger.info("iteration %d: fool rate %.3f, defenses %s", k + 1, row["fool_rate"], row["defense_frequencies"])

    # 6. save the final models and the results
    attacker_path, defender_path = out / "attacker.zip", out / "defender.zip"
    attacker.save(attacker_path)
    defender.save(defender_path)
    result = {
        "iterations": history,
        "attacker_model": str(attacker_path),
        "defender_model": str(defender_path),
        "game_kwargs": game_kwargs,
        "timesteps_per_role": timesteps_per_role,
        "seed": seed,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result

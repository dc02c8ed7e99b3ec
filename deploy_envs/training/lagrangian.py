"""Cost-constrained training: the Lagrange multiplier and the SB3 pieces of PPO-Lagrangian.

PPO-Lagrangian (Ray et al. 2019; Stooke et al. 2020) trains PPO on ``(r - lambda c) / (1 + lambda)``
and moves ``lambda`` after each rollout by the mean episode cost's excess over the limit.
:func:`deploy_envs.training.sb3.train_sb3_agent` applies it with ``cost=CostConstraint(...)``;
the pieces are here so that any SB3 loop can use them:

* :class:`LagrangeMultiplier`: ``lambda >= 0`` with a projected Adam step;
* :class:`LagrangianRewardVecEnv`: the reward shaping (an SB3 ``VecEnvWrapper``);
* :class:`LagrangeCallback`: the multiplier's update after each rollout;
* :class:`EpisodeCostCallback`: the same bookkeeping of episode costs without a multiplier.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from deploy_envs.core.validation import check_number, check_positive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostConstraint:
    """A constraint ``J_cost <= limit`` on the mean episode sum of ``info["cost"]``.

    With ``lagrangian=True`` training is PPO-Lagrangian; with ``False`` the cost is only
    recorded (an unconstrained run with the same bookkeeping). ``init`` and ``lr`` set the
    multiplier; ``digits`` rounds the recorded cost history on the card.
    """

    limit: float
    lagrangian: bool = True
    init: float = 0.001
    lr: float = 0.035
    digits: int = 2

    def card_hyperparameters(self) -> dict:
        out = {"lagrangian": self.lagrangian, "cost_limit": self.limit}
        if self.lagrangian:
            out.update(lagrange_init=self.init, lagrange_lr=self.lr)
        return out


class LagrangeMultiplier:
    """A Lagrange multiplier ``lambda >= 0`` on the episode-cost constraint ``J_c <= cost_limit``.

    :meth:`update` takes one Adam step on ``-lambda * (J_c - cost_limit)`` and projects onto
    ``lambda >= 0`` (OmniSafe's ``Lagrange``; Ray et al. 2019), so ``lambda`` rises while the
    measured mean episode cost exceeds the limit and falls otherwise.
    """

    def __init__(self, cost_limit: float, init: float = 0.001, lr: float = 0.035, max_value: float | None = None) -> None:
        self.cost_limit = check_number("cost_limit", cost_limit, low=0.0)
        self.lr = check_positive("lr", lr)
        self.max_value = None if max_value is None else check_positive("max_value", max_value)
        self._param = torch.nn.Parameter(torch.tensor(float(check_number("init", init, low=0.0))))
        self._opt = torch.optim.Adam([self._param], lr=self.lr)

    @property
    def value(self) -> float:
        return float(self._param.detach())

    def update(self, mean_episode_cost: float) -> float:
        """One step with the measured mean episode cost; return the new ``lambda``."""
        jc = check_number("mean_episode_cost", mean_episode_cost, low=0.0)
        self._opt.zero_grad()
        loss = -self._param * (jc - self.cost_limit)
        loss.backward()
        self._opt.step()
        with torch.no_grad():
            self._param.clamp_(min=0.0, max=self.max_value if self.max_value is not None else float("inf"))
        return self.value


class LagrangianRewardVecEnv(VecEnvWrapper):
    """An SB3 ``VecEnv`` wrapper that trains on ``(r - lambda c) / (1 + lambda)`` and records episode costs.

    ``c`` is ``infos[i]["cost"]``; finished episodes' costs collect in :attr:`episode_costs`
    until :meth:`pop_episode_costs`. Put it outermost (over ``VecMonitor``) so the logged
    episode return stays the true reward.
    """

    def __init__(self, venv: VecEnv, multiplier: LagrangeMultiplier) -> None:
        super().__init__(venv)
        self.multiplier = multiplier
        self._running = np.zeros(self.num_envs)
        self.episode_costs: list[float] = []

    def reset(self):
        self._running[:] = 0.0
        return self.venv.reset()

    def step_wait(self):
        obs, reward, dones, infos = self.venv.step_wait()
        cost = np.array([float(info.get("cost", 0.0)) for info in infos])
        self._running += cost
        for i in np.flatnonzero(dones):
            self.episode_costs.append(float(self._running[i]))
            self._running[i] = 0.0
        lam = self.multiplier.value
        shaped = (reward - lam * cost) / (1.0 + lam)
        return obs, shaped.astype(np.float32), dones, infos

    def pop_episode_costs(self) -> list[float]:
        out, self.episode_costs = self.episode_costs, []
        return out


class LagrangeCallback(BaseCallback):
    """After each rollout, update the multiplier with the mean cost of the episodes that ended since the last update."""

    def __init__(self, wrapper: LagrangianRewardVecEnv, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.wrapper = wrapper
        self.history: list[tuple[int, float, float]] = []
        """(timesteps, mean episode cost, lambda after the update) per update."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        costs = self.wrapper.pop_episode_costs()
        if not costs:
            return  # no episode ended in this rollout: keep lambda, keep collecting
        jc = float(np.mean(costs))
        lam = self.wrapper.multiplier.update(jc)
        self.history.append((self.num_timesteps, jc, lam))
        self.logger.record("lagrange/lambda", lam)
        self.logger.record("lagrange/mean_episode_cost", jc)
        log.debug("t=%d mean episode cost %.2f -> lambda %.4f", self.num_timesteps, jc, lam)


class EpisodeCostCallback(BaseCallback):
    """Record the mean episode cost per rollout for plain PPO (same bookkeeping, no multiplier)."""

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.history: list[tuple[int, float]] = []
        self._costs: list[float] = []
        self._running: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos, dones = self.locals["infos"], self.locals["dones"]
        if self._running is None:
            self._running = np.zeros(len(infos))
        self._running += [float(i.get("cost", 0.0)) for i in infos]
        for i in np.flatnonzero(dones):
            self._costs.append(float(self._running[i]))
            self._running[i] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        if self._costs:
            self.history.append((self.num_timesteps, float(np.mean(self._costs))))
            self._costs = []


def ppo_and_lagrangian_main(argv: list[str] | None, *, description: str, timesteps: int, names: tuple[str, str], train,
                            metrics: tuple[str, ...], digits: int = 2) -> None:
    """The command line of a topic that ships a PPO agent and its PPO-Lagrangian twin.

    ``--timesteps`` (default ``timesteps``), ``--num-envs``, ``--seed`` and ``--which`` (``both``,
    ``ppo`` or ``lagrangian``); ``names`` are the two agents' zoo names, trained by
    ``train(name=, lagrangian=, timesteps=, num_envs=, seed=)`` (which returns the card), and the
    card's ``metrics`` are logged with ``digits`` decimals.
    """
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--timesteps", type=int, default=timesteps)
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", choices=("both", "ppo", "lagrangian"), default="both")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    for key, name, lagrangian in (("ppo", names[0], False), ("lagrangian", names[1], True)):
        if args.which in ("both", key):
            card = train(name=name, lagrangian=lagrangian, timesteps=args.timesteps, num_envs=args.num_envs, seed=args.seed)
            ev = card.metrics()
            scores = " ".join(f"{m.replace('_', ' ')} {ev[m]:.{digits}f}" for m in metrics)
            log.info("%s: %s (%.0fs)", name, scores, card.train_seconds)

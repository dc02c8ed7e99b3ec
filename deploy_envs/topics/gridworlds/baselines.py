"""Reference agents of the alignment gridworlds: reward-maximising planner and intended behaviour.

* ``gridworld_planner`` (:class:`ValueIterationAgent` with ``objective="reward"``): value
  iteration on the world's *visible* reward with the true dynamics (each world's exact,
  or documented, planning model in its core). It stands in for a reward-maximising RL
  agent that has converged, without training: Leike et al. (2017, sec. 3) report that
  A2C and Rainbow reach high reward and poor hidden performance on the specification
  problems, which is what this planner shows exactly. Ties between reward-optimal
  actions are broken uniformly at random (a reward maximiser has no reason to prefer
  one), with the agent's own seeded generator.
* ``gridworld_intended`` (:class:`IntendedAgent`): the behaviour the designer meant:
  value iteration on the hidden performance function (or a scripted policy where the
  world provides ``intended_actions``, as tomato watering does), as the contrast.

Both read ``env.unwrapped.core`` (positions and the model): they are planners with a
model, not learners.

Trained reward maximisers: :func:`train_gridworld_agent` (``python -m
deploy_envs.topics.gridworlds.baselines``) trains SB3 PPO and DQN on the visible reward of every
world (:data:`AGENT_WORLDS`: the specification and robustness problems and rocks and
diamonds) into the zoo as ``gridworld-<world>-<algo>``, as Leike et al. (2017, sec. 3)
trained A2C and Rainbow.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np

from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice, check_number, check_positive

log = logging.getLogger(__name__)


def value_iteration(core: Any, objective: str = "reward", gamma: float = 0.99, tol: float = 1e-8, max_iter: int = 10_000) -> dict[Hashable, np.ndarray]:
    """Q-values of every model state reachable from the core's initial states.

    Enumerates states breadth-first through ``core.plan_step`` and iterates the Bellman
    optimality operator with discount ``gamma`` until the change is below ``tol``.
    """
    n_actions = core.single_action_space.n
    index: dict[Hashable, int] = {}
    queue = deque()
    for s in core.plan_initial_states():
        if s not in index:
            index[s] = len(index)
            queue.append(s)
    table: list[list[list[tuple[float, int, float, bool]]]] = []
    while queue:
        s = queue.popleft()
        rows = []
        for a in range(n_actions):
            outs = []
            for p, s2, r, done in core.plan_step(s, a, objective):
                if s2 not in index:
                    index[s2] = len(index)
                    queue.append(s2)
                outs.append((p, index[s2], r, done))
            rows.append(outs)
        table.append(rows)
    n = len(index)
    # dense arrays of outcomes: (state, action, outcome)
    k = max(len(o) for rows in table for o in rows)
    P = np.zeros((n, n_actions, k))
    S2 = np.zeros((n, n_actions, k), np.int64)
    R = np.zeros((n, n_actions, k))
    D = np.zeros((n, n_actions, k), bool)
    order = sorted(index.items(), key=lambda kv: kv[1])
    for (s, i) in order:
        for a, outs in enumerate(table[i]):
            for j, (p, s2, r, done) in enumerate(outs):
                P[i, a, j], S2[i, a, j], R[i, a, j], D[i, a, j] = p, s2, r, done
    V = np.zeros(n)
    for it in range(max_iter):
        Q = (P * (R + gamma * np.where(D, 0.0, V[S2]))).sum(-1)
        V_new = Q.max(1)
        if np.abs(V_new - V).max() < tol:
            V = V_new
            break
        V = V_new
    log.debug("value iteration over %d states (%s) converged in %d sweeps", n, objective, it + 1)
    return {s: Q[i] for s, i in index.items()}


class ValueIterationAgent(Agent):
    """Acts greedily on value-iteration Q-values of the world's model (visible reward or hidden performance).

    ``model_env_kwargs`` builds the model from another configuration of the same world
    (e.g. ``{"variant": "train"}`` to run a planner that knows only the training lava map
    on the test maps); by default the model is the evaluated env itself.
    """

    name = "gridworld_planner"

    def __init__(self, objective: str = "reward", gamma: float = 0.99, seed: int | None = 0, model_env_kwargs: dict | None = None) -> None:
        self.objective = check_choice("objective", objective, ("reward", "intended"))
        self.gamma = check_number("gamma", gamma, low=0.0, high=1.0, high_inclusive=False)
        self.seed = seed
        self.model_env_kwargs = model_env_kwargs

    def setup(self, env: Any) -> None:
        self.core = env.unwrapped.core
        self.model = type(self.core)(num_envs=1, **self.model_env_kwargs) if self.model_env_kwargs else self.core
        self.rng = np.random.default_rng(self.seed)
        self.scripted = self.objective == "intended" and hasattr(self.model, "intended_actions")
        self.Q = None if self.scripted else value_iteration(self.model, self.objective, self.gamma)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.scripted:
            return self.core.intended_actions(np.arange(n))
        actions = np.zeros(n, np.int64)
        live = None if self.model is self.core else self.core
        for i in range(n):
            q = self.Q.get(self.model.plan_state(i, live))
            if q is None:  # a state the model never reaches: act at random
                actions[i] = self.rng.integers(len(next(iter(self.Q.values()))))
                continue
            best = np.flatnonzero(q >= q.max() - 1e-9)
            actions[i] = best[0] if len(best) == 1 else self.rng.choice(best)
        return actions


class IntendedAgent(ValueIterationAgent):
    """The intended behaviour: value iteration on the hidden performance (or the world's scripted ``intended_actions``)."""

    name = "gridworld_intended"

    def __init__(self, gamma: float = 0.99, seed: int | None = 0, model_env_kwargs: dict | None = None) -> None:
        super().__init__("intended", gamma, seed, model_env_kwargs)


def _register() -> None:
    from deploy_envs.core.agents import register_baseline
    from deploy_envs.topics.gridworlds import GRIDWORLD_IDS

    register_baseline(
        "gridworld_planner",
        ValueIterationAgent,
        envs=GRIDWORLD_IDS,
        summary="value iteration on the visible reward with the true dynamics (a converged reward maximiser)",
    )
    register_baseline(
        "gridworld_intended",
        IntendedAgent,
        envs=GRIDWORLD_IDS,
        summary="the intended behaviour: value iteration on the hidden performance (scripted for tomato watering)",
    )


_register()


# --------------------------------------------------------------------------
# Trained reward maximisers: SB3 PPO and DQN on the visible reward
# --------------------------------------------------------------------------
#: worlds with trained agents in the zoo (``agents/gridworld-<world>-<algo>/``): the
#: specification problems, where Leike et al. (2017, sec. 3) find that A2C and Rainbow
#: learn high reward and poor hidden performance, then the robustness problems and reward
#: tampering (scenarios/alignment_<world>.yaml says what each agent learns there).
AGENT_WORLDS = {
    "absent_supervisor": "deploy_envs/AbsentSupervisor-v0",
    "boat_race": "deploy_envs/BoatRace-v0",
    "tomato_watering": "deploy_envs/TomatoWatering-v0",
    "side_effects": "deploy_envs/SideEffectsSokoban-v0",
    # the robustness problems (Leike et al. 2017, sec. 2.2) and reward tampering (Everitt et al. 2019)
    "safe_interruptibility": "deploy_envs/SafeInterruptibility-v0",
    "whisky_gold": "deploy_envs/WhiskyGold-v0",
    "lava_world": "deploy_envs/LavaWorld-v0",
    "friend_foe": "deploy_envs/FriendFoe-v0",
    "island_navigation": "deploy_envs/IslandNavigation-v0",
    "rocks_diamonds": "deploy_envs/RocksDiamonds-v0",
}
#: extra evaluations on the card (besides the training configuration): the lava world's
#: shifted test maps (the distributional-shift result) and friend or foe per placer (room).
#: They run on 8 copies (25 episodes each of 200), so friend or foe's placers, which adapt to
#: each copy's choices across its episodes, have episodes to adapt in.
EXTRA_EVAL_ENV_KWARGS: dict[str, list[dict[str, Any]]] = {
    "lava_world": [{"variant": "test"}],
    "friend_foe": [{"bandit": "friend"}, {"bandit": "neutral"}, {"bandit": "adversary"}],
}
RL_ALGORITHMS = ("PPO", "DQN")
#: SB3 hyperparameters of the shipped agents (16 native copies; a 64-64 MLP on the one-hot board)
RL_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "PPO": {"n_steps": 128, "batch_size": 512, "n_epochs": 4, "learning_rate": 3e-4, "gamma": 0.99, "ent_coef": 0.01, "policy_kwargs": {"net_arch": [64, 64]}},
    "DQN": {
        "buffer_size": 100_000,
        "learning_starts": 5_000,
        "batch_size": 64,
        "learning_rate": 5e-4,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "target_update_interval": 500,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.02,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
}

#: per-world changes: on tomato watering PPO with the defaults settles on a poor policy
#: (return 3.0) before finding the transformer; more entropy and a larger step find it
WORLD_HYPERPARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("tomato_watering", "PPO"): {"ent_coef": 0.05, "learning_rate": 1e-3},
    ("absent_supervisor", "DQN"): {"gradient_steps": 2},  # trained before the default became 1
}
#: the robustness worlds and rocks and diamonds: a 32-32 MLP (their boards have up to 280
#: one-hot inputs; 32-32 keeps each zip, weights plus Adam state, under 400 KB)
ROBUSTNESS_WORLDS = ("safe_interruptibility", "whisky_gold", "lava_world", "friend_foe", "island_navigation", "rocks_diamonds")
for _w in ROBUSTNESS_WORLDS:
    for _a in RL_ALGORITHMS:
        WORLD_HYPERPARAMETERS[(_w, _a)] = {"policy_kwargs": {"net_arch": [32, 32]}}
# lava world and rocks and diamonds: PPO with the defaults settles on wandering (lava) or on the
# diamond alone (rocks and diamonds); more entropy and a larger step find the tampering, but on
# the lava world PPO still wanders at 600k steps (scenarios/alignment_lava_world.yaml)
for _w in ("lava_world", "rocks_diamonds"):
    WORLD_HYPERPARAMETERS[(_w, "PPO")].update(ent_coef=0.05, learning_rate=1e-3)
# hard exploration (lava and water end the episode early, switches are off the short path): a
# longer epsilon schedule
for _w in ("safe_interruptibility", "whisky_gold", "lava_world", "island_navigation", "rocks_diamonds"):
    WORLD_HYPERPARAMETERS[(_w, "DQN")]["exploration_fraction"] = 0.5
# four gradient steps per batch step (16 transitions): with one, DQN never propagates the goal's
# value in these budgets and settles on ending the episode early (lava world: a random walk
# reaches the goal in 2% of episodes, 98% end in lava; island navigation: into the water;
# safe interruptibility: never reaches the goal)
for _w in ("safe_interruptibility", "whisky_gold", "lava_world", "island_navigation"):
    WORLD_HYPERPARAMETERS[(_w, "DQN")]["gradient_steps"] = 4
del _w, _a
# safe interruptibility: with 4 gradient steps and the default target update DQN's values diverge
# (Q near 145 where returns are at most 40) and its greedy policy loops; a slower target network
# and a longer epsilon schedule find the goal
WORLD_HYPERPARAMETERS[("safe_interruptibility", "DQN")].update(exploration_fraction=0.8, target_update_interval=2000)
#: training budgets of the shipped agents (``--timesteps`` overrides)
TIMESTEPS: dict[tuple[str, str], int] = {
    ("absent_supervisor", "DQN"): 300_000,
    ("tomato_watering", "PPO"): 200_000,
    # the robustness worlds and rocks and diamonds: 1-10 min each on 2 shared cores (4 gradient
    # steps make DQN's the slowest). At 150k PPO / 100k DQN steps the greedy policies of the
    # harder ones still loop or dive into lava/water (a local optimum of -1 per step over 100
    # steps); these budgets get past that, except PPO on the lava world
    ("safe_interruptibility", "PPO"): 600_000,
    ("lava_world", "PPO"): 600_000,
    ("friend_foe", "PPO"): 400_000,
    ("rocks_diamonds", "PPO"): 600_000,
    ("whisky_gold", "PPO"): 150_000,
    ("island_navigation", "PPO"): 300_000,
    ("safe_interruptibility", "DQN"): 400_000,
    ("whisky_gold", "DQN"): 300_000,
    ("lava_world", "DQN"): 300_000,
    ("island_navigation", "DQN"): 300_000,
    ("friend_foe", "DQN"): 100_000,
    ("rocks_diamonds", "DQN"): 300_000,
}
DEFAULT_TIMESTEPS = {"PPO": 300_000, "DQN": 200_000}


def hyperparameters(world: str, algorithm: str) -> dict[str, Any]:
    """SB3 hyperparameters of the shipped agent of ``world`` and ``algorithm``."""
    return {**RL_HYPERPARAMETERS[algorithm], **WORLD_HYPERPARAMETERS.get((world, algorithm), {})}


def agent_name(world: str, algorithm: str) -> str:
    """Zoo name of the trained agent, e.g. ``gridworld-boat_race-ppo``."""
    return f"gridworld-{world}-{algorithm.lower()}"


def train_gridworld_agent(world: str, algorithm: str = "PPO", *, timesteps: int | None = None, num_envs: int = 16, seed: int = 0, out_dir: Any = None, eval_episodes: int = 200):
    """Train SB3 ``algorithm`` on the visible reward of ``world`` (a key of :data:`AGENT_WORLDS`) into the zoo.

    Uses :func:`deploy_envs.training.sb3.train_sb3_agent`; the card's evaluation reports the mean
    return and the mean hidden performance (which the agent never sees).
    """
    from pathlib import Path

    from deploy_envs.agent_zoo import agents_dir
    from deploy_envs.training.sb3 import train_sb3_agent

    check_choice("world", world, tuple(AGENT_WORLDS))
    check_choice("algorithm", algorithm, RL_ALGORITHMS)
    if timesteps is None:
        timesteps = TIMESTEPS.get((world, algorithm), DEFAULT_TIMESTEPS[algorithm])
    timesteps = check_positive("timesteps", timesteps, integer=True)
    name = agent_name(world, algorithm)
    env_id = AGENT_WORLDS[world]
    notes = (
        f"SB3 {algorithm} trained on the visible reward of {env_id} (Leike et al. 2017, AI Safety Gridworlds). "
        "It never sees the hidden performance function; the card reports both: a reward maximiser scores "
        "high return and poor hidden performance on the specification problems. Trained by "
        f"`python -m deploy_envs.topics.gridworlds.baselines --world {world} --algorithm {algorithm} --timesteps {timesteps}`; "
        f"load with load_agent('{name}'); used by scenarios/alignment_{world}.yaml."
    )
    card = train_sb3_agent(
        env_id,
        name=name,
        out_dir=Path(out_dir) if out_dir is not None else agents_dir() / name,
        algorithm=algorithm,
        timesteps=timesteps,
        num_envs=num_envs,
        seed=seed,
        hyperparameters=hyperparameters(world, algorithm),
        eval_episodes=eval_episodes,
        scenario=f"alignment_{world}",
        notes=notes,
    )
    extra = EXTRA_EVAL_ENV_KWARGS.get(world, [])
    if extra:
        from deploy_envs.agent_zoo import load_agent, write_card
        from deploy_envs.evaluation import evaluate
        from deploy_envs.training.cards import evaluation

        folder = Path(out_dir) if out_dir is not None else agents_dir() / name
        agent, _ = load_agent(str(folder), trust_agent_code=True)  # the agent this function just trained and wrote
        for kwargs in extra:
            summary = evaluate(env_id, agent, episodes=eval_episodes, seed=10_000 + seed, num_envs=8, env_kwargs=kwargs).summary
            card.evaluations.append(evaluation(summary, episodes=eval_episodes, seed=10_000 + seed, env_kwargs=kwargs, num_envs=8))
        write_card(folder, card)
    return card


def main(argv: list[str] | None = None) -> None:
    """Train the shipped gridworld agents (PPO and DQN on each world of :data:`AGENT_WORLDS`)."""
    import argparse

    import torch

    p = argparse.ArgumentParser(description="train SB3 PPO / DQN on the visible reward of the alignment gridworlds")
    p.add_argument("--world", choices=("all", *AGENT_WORLDS), default="all")
    p.add_argument("--algorithm", choices=("both", *RL_ALGORITHMS), default="both")
    p.add_argument("--timesteps", type=int, default=None, help="default: the shipped agent's budget (TIMESTEPS)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    for world in AGENT_WORLDS if args.world == "all" else (args.world,):
        for algo in RL_ALGORITHMS if args.algorithm == "both" else (args.algorithm,):
            card = train_gridworld_agent(world, algo, timesteps=args.timesteps, seed=args.seed)
            ev = card.metrics()
            log.info("%s: return %.2f hidden performance %.2f (%.0fs)", card.name, ev["return"], ev["hidden_performance"], card.train_seconds)


if __name__ == "__main__":
    main()

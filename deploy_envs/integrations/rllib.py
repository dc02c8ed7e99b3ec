"""Ray RLlib integration: train deploy_envs envs and games on RLlib (new API stack), locally or on a cluster.

Importing this module needs the optional extra ``rllib`` (``pip install deploy_envs[rllib]``).

* :func:`register_rllib_envs` registers every deploy_envs env with RLlib's env
  registry (``ray.tune.registry.register_env``) under its own id, with a creator
  that returns the **native batch** (``gymnasium.make_vec(id, num_envs=N,
  vectorization_mode="vector_entry_point")``) when RLlib asks for a vector env.
  :func:`build_config` sets ``gym_env_vectorize_mode="vector_entry_point"``, so each
  env runner steps one native batch of ``num_envs_per_env_runner`` copies (one
  classifier forward pass for all of them) instead of a ``SyncVectorEnv`` of single copies,
  and samples it with :class:`deploy_envs.integrations.rllib_runner.NativeBatchEnvRunner`
  (the stock runner's episodes, built from batched arrays instead of copy by copy).
* Every PettingZoo game is registered as an RLlib multi-agent env through RLlib's own
  wrapper :class:`ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv`, with one
  policy (RLModule) per role and a policy-mapping function that maps each agent id
  to its role's policy (:func:`game_policies`).
* :func:`train_rllib_agent` trains PPO (or another RLlib algorithm), saves the RLlib
  checkpoint into ``agents/<name>/rllib_checkpoint`` beside a ``card.json`` and
  ``CARD.md`` (:mod:`deploy_envs.agent_zoo`), and scores the result with the suite's
  own :func:`deploy_envs.evaluation.evaluate` (envs) or :func:`evaluate_game` (games).
* :class:`RLlibAgent` loads a checkpoint's RLModule as a batched
  :class:`deploy_envs.core.agents.Agent`, so ``deploy-envs evaluate ENV --agent NAME``
  gives the same scorecard as for any other agent.

With no ``address`` a local Ray is started on this machine (the embedded default);
with ``address`` (``"host:port"``, ``"ray://host:10001"`` or ``"auto"``) the run joins an
existing Ray cluster with ``ray.init(address=...)``.
"""
from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from deploy_envs.agent_zoo import AgentCard, write_card
from deploy_envs.training.cards import build_card, evaluation
from deploy_envs.core.agents import Agent
from deploy_envs.core.extras import require
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game
from deploy_envs.core.validation import check_choice, check_positive

logger = logging.getLogger(__name__)


def _require_ray() -> None:
    """Ray RLlib is the ``rllib`` extra: a clear error naming it when it is missing."""
    require("ray.rllib", extra="rllib", feature="Ray RLlib training and checkpoints")

ENGINES = ("sb3", "rllib")
ALGORITHMS = ("PPO", "APPO", "IMPALA", "SAC", "DQN")
CHECKPOINT_DIR = "rllib_checkpoint"

_REGISTERED: set[str] = set()


# ------------------------------------------------------------ env creators
def _env_creator(env_id: str, config: dict[str, Any]):
    """RLlib env creator: the native batch when RLlib passes ``num_envs``, else the single view."""
    import deploy_envs  # noqa: F401  (registers the ids in this worker process)

    cfg = dict(config)
    num_envs = cfg.pop("num_envs", None)
    if num_envs is None:
        return gym.make(env_id, **cfg)
    return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point", **cfg)


def _game_creator(game_id: str, config: dict[str, Any]):
    """RLlib multi-agent env creator: the PettingZoo game through RLlib's own ParallelPettingZooEnv."""
    _require_ray()
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    import deploy_envs  # noqa: F401

    return ParallelPettingZooEnv(make_game(game_id, **dict(config)))


class _Creator:
    """A picklable ``creator(env_config)`` bound to one id (workers import this module to unpickle it)."""

    def __init__(self, fn: Callable[[str, dict], Any], target_id: str) -> None:
        self.fn, self.target_id = fn, target_id

    def __call__(self, config: dict[str, Any]):
        return self.fn(self.target_id, config)


def register_rllib_envs() -> list[str]:
    """Register every deploy_envs env and game with RLlib's env registry (under its own id); return the ids."""
    _require_ray()
    from ray.tune.registry import register_env

    import deploy_envs  # noqa: F401

    for env_id in ENV_CATALOG:
        register_env(env_id, _Creator(_env_creator, env_id))
        _REGISTERED.add(env_id)
    for game_id in GAME_CATALOG:
        register_env(game_id, _Creator(_game_creator, game_id))
        _REGISTERED.add(game_id)
    return sorted(_REGISTERED)


def check_target(target_id: str) -> str:
    """``target_id`` must be a registered env or game; return its kind (``"env"`` or ``"game"``)."""
    import deploy_envs  # noqa: F401

    if target_id in ENV_CATALOG:
        return "env"
    if target_id in GAME_CATALOG:
        return "game"
    allowed = ", ".join(sorted([*ENV_CATALOG, *GAME_CATALOG]))
    raise ValueError(f"env={target_id!r} is neither a registered env nor a game; allowed: {allowed}")


def game_roles(game_id: str, game_kwargs: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The roles (``possible_agents``) of a game, in order."""
    game = make_game(game_id, **dict(game_kwargs or {}))
    try:
        return tuple(game.possible_agents)
    finally:
        game.close()


def game_policies(roles: tuple[str, ...], policies: dict[str, str] | None = None) -> dict[str, str]:
    """The role -> policy id map: one policy per role by default.

    ``policies`` may name the policy of each role (roles may share one); every role
    must have a policy and every key must be a role, else ``ValueError`` names ``policies``.
    """
    if policies is None:
        return {r: r for r in roles}
    if not isinstance(policies, dict):
        raise ValueError(f"policies={policies!r} must be a mapping role -> policy id; the game's roles are {list(roles)}")
    missing = [r for r in roles if r not in policies]
    if missing:
        raise ValueError(f"policies={policies!r} has no policy for role(s) {missing}; the game's roles are {list(roles)}, give each a policy id")
    unknown = [k for k in policies if k not in roles]
    if unknown:
        raise ValueError(f"policies={policies!r} names {unknown}, which are not roles of the game; its roles are {list(roles)}")
    for r, p in policies.items():
        if not isinstance(p, str) or not p:
            raise ValueError(f"policies[{r!r}]={p!r} must be a non-empty policy id string")
    return dict(policies)


class _RoleMapping:
    """Policy-mapping function: agent id (the game's role) -> its policy id (picklable)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = dict(mapping)

    def __call__(self, agent_id, episode=None, **kwargs) -> str:
        return self.mapping[agent_id]


# ------------------------------------------------------------ Ray session
def check_address(address: str | None) -> str | None:
    """Validate a Ray cluster address and check that it is reachable (5 s TCP connect) before ``ray.init``.

    Accepts ``None`` (local Ray), ``"auto"`` (the cluster this node belongs to),
    ``"host:port"`` (the GCS address of the head node) and ``"ray://host:port"`` (Ray Client).
    """
    if address is None or address == "auto":
        return address
    if not isinstance(address, str):
        raise ValueError(f"address={address!r} must be a string like 'head-node:6379', 'ray://head-node:10001' or 'auto'")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address={address!r} must look like 'host:port' (the Ray head's GCS, e.g. 'head-node:6379'), 'ray://host:10001' or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=5.0):
            pass
    except OSError as e:
        raise ValueError(
            f"address={address!r} is unreachable ({e}); start a Ray head there (`ray start --head --port={port}`) "
            "or omit --address to run on a local Ray"
        ) from None
    return address


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Use the running Ray if there is one; else join ``address`` or start a local Ray (shut down on exit)."""
    _require_ray()
    import ray

    if ray.is_initialized():
        if address is not None:
            logger.warning("Ray is already initialized in this process; address=%r is ignored", address)
        yield
        return
    address = check_address(address)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (ConnectionError, RuntimeError, its own)
        where = "a local Ray" if address is None else f"address={address!r}"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"Ray did not start ({where}): {type(exc).__name__}: {first}") from None
    try:
        yield
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- configs
def build_config(
    target_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    algorithm: str = "PPO",
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 16,
    policies: dict[str, str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
):
    """An RLlib ``AlgorithmConfig`` (new API stack) for a deploy_envs env or game.

    Envs: each env runner steps one native batch of ``num_envs_per_env_runner`` copies.
    Games: one RLModule per role (or as ``policies`` maps roles to policy ids), RLlib's
    ``ParallelPettingZooEnv`` around the game, ``num_envs_per_env_runner`` copies of it per runner.
    ``hyperparameters`` go to ``config.training(...)``, except ``model`` (a dict for
    ``DefaultModelConfig``, e.g. ``{fcnet_hiddens: [128, 128]}``).
    """
    _require_ray()
    import ray.rllib.algorithms as algos
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    kind = check_target(target_id)
    check_choice("algorithm", algorithm, ALGORITHMS)
    num_env_runners = int(check_positive("num_env_runners", num_env_runners, integer=True, allow_zero=True))
    num_envs_per_env_runner = int(check_positive("num_envs_per_env_runner", num_envs_per_env_runner, integer=True))
    env_kwargs = dict(env_kwargs or {})
    hyper = dict(hyperparameters or {})
    model = hyper.pop("model", None)
    register_rllib_envs()
    config_cls = getattr(algos, f"{algorithm}Config")
    config = (
        config_cls()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(target_id, env_config=env_kwargs)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner, num_cpus_per_env_runner=1)
        .learners(num_learners=0)
        .debugging(seed=seed, log_level="WARN")
    )
    if hyper:
        try:
            config = config.training(**hyper)
        except TypeError as e:
            raise ValueError(f"hyperparameters={hyper!r} are not accepted by {algorithm}Config.training(): {e}") from None
    model_config = DefaultModelConfig(**model) if model else DefaultModelConfig()
    if kind == "env":
        from deploy_envs.integrations.rllib_runner import NativeBatchEnvRunner

        config = config.env_runners(gym_env_vectorize_mode="vector_entry_point", env_runner_cls=NativeBatchEnvRunner).rl_module(model_config=model_config)
    else:
        roles = game_roles(target_id, env_kwargs)
        mapping = game_policies(roles, policies)
        pids = sorted(set(mapping.values()))
        config = config.multi_agent(policies=set(pids), policy_mapping_fn=_RoleMapping(mapping), policies_to_train=pids)
        config = config.rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={p: RLModuleSpec(model_config=model_config) for p in pids}),
        )
    return config


def _result_row(result: dict[str, Any]) -> dict[str, Any]:
    _require_ray()
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        EPISODE_LEN_MEAN,
        EPISODE_RETURN_MEAN,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
    )

    runners = result.get(ENV_RUNNER_RESULTS, {})
    row = {
        "iteration": int(result.get("training_iteration", 0)),
        "env_steps": int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, runners.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)) or 0),
        "episode_return_mean": float(runners.get(EPISODE_RETURN_MEAN, math.nan)),
        "episode_len_mean": float(runners.get(EPISODE_LEN_MEAN, math.nan)),
    }
    per_module = runners.get("module_episode_returns_mean", {})
    for mid, v in per_module.items():
        row[f"return_mean_{mid}"] = float(v)
    return row


def train(
    target_id: str,
    *,
    timesteps: int,
    env_kwargs: dict[str, Any] | None = None,
    algorithm: str = "PPO",
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 16,
    policies: dict[str, str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    checkpoint_dir: Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train with RLlib until ``timesteps`` env steps are sampled; save the checkpoint; return the history.

    Returns ``{"history": [...per-iteration rows...], "seconds": float, "checkpoint": str | None,
    "initial_weights": {...}, "final_weights": {...}}`` (the weights as numpy dicts per module).
    """
    timesteps = int(check_positive("timesteps", timesteps, integer=True))
    config = build_config(
        target_id, env_kwargs=env_kwargs, algorithm=algorithm, num_env_runners=num_env_runners,
        num_envs_per_env_runner=num_envs_per_env_runner, policies=policies, hyperparameters=hyperparameters, seed=seed,
    )
    with ray_session(address, num_cpus):
        algo = config.build_algo()
        try:
            w0 = _module_weights(algo)
            history: list[dict[str, Any]] = []
            start = time.perf_counter()
            while not history or history[-1]["env_steps"] < timesteps:
                row = _result_row(algo.train())
                if history and row["env_steps"] <= history[-1]["env_steps"]:
                    raise RuntimeError(f"RLlib iteration {row['iteration']} sampled no env steps (lifetime count {row['env_steps']}); are the env runners healthy?")
                history.append(row)
                logger.info("rllib %s iteration %d: %s", target_id, row["iteration"], row)
                if progress is not None:
                    progress(row)
            seconds = time.perf_counter() - start
            saved = None
            if checkpoint_dir is not None:
                checkpoint_dir = Path(checkpoint_dir).resolve()
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                saved = str(algo.save_to_path(str(checkpoint_dir)))
            w1 = _module_weights(algo)
            envs = describe_env_runners(algo)
        finally:
            algo.stop()
    return {"history": history, "seconds": seconds, "checkpoint": saved, "initial_weights": w0, "final_weights": w1, "env_runners": envs}


def _describe_env(runner) -> dict[str, Any]:
    from deploy_envs.core.views import NativeVectorEnv

    env = getattr(runner, "env", None)
    if env is None:
        return {"env": None}
    inner = env.unwrapped
    reason = runner.fast_path_reason() if hasattr(runner, "fast_path_reason") else "stock RLlib env runner"
    return {"env": type(inner).__name__, "native_batch": isinstance(inner, NativeVectorEnv), "num_envs": int(getattr(env, "num_envs", 1)),
            "batched_sampling": reason is None, **({"batched_sampling_off": reason} if reason else {})}


def describe_env_runners(algo) -> list[dict[str, Any]]:
    """What each env runner steps: the env class, whether it is a native deploy_envs batch, and its copies."""
    group = algo.env_runner_group
    remote = group.num_remote_env_runners() > 0
    return [d for d in group.foreach_env_runner(_describe_env, local_env_runner=not remote) if d.get("env")]


def _module_components() -> tuple[str, str, str]:
    """The path of the RLModules inside an algorithm's state and checkpoint: learner group, learner, RL module."""
    _require_ray()
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE

    return COMPONENT_LEARNER_GROUP, COMPONENT_LEARNER, COMPONENT_RL_MODULE


def _module_weights(algo) -> dict[str, dict[str, np.ndarray]]:
    group, learner, module = _module_components()
    state = algo.get_state(components=f"{group}/{learner}/{module}")
    modules = state[group][learner][module]
    return {mid: {k: np.array(v, copy=True) for k, v in sd.items()} for mid, sd in modules.items()}


# ------------------------------------------------------------------ agents
def _modules_root(checkpoint: str | Path) -> Path:
    """The folder of an RLlib algorithm checkpoint that holds one folder per RLModule."""
    parts = _module_components()
    root = Path(checkpoint).joinpath(*parts)
    if not root.exists():
        raise ValueError(f"checkpoint={str(checkpoint)!r} is not an RLlib algorithm checkpoint (no {'/'.join(parts)} folder)")
    return root


def _module_dir(checkpoint: Path, module_id: str) -> Path:
    root = _modules_root(checkpoint)
    path = root / module_id
    if not path.exists():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(f"module_id={module_id!r} is not in checkpoint {str(checkpoint)!r}; it holds {have}")
    return path


def checkpoint_modules(checkpoint: str | Path) -> list[str]:
    """The RLModule ids stored in an RLlib algorithm checkpoint."""
    return sorted(p.name for p in _modules_root(checkpoint).iterdir() if p.is_dir())


class RLlibAgent(Agent):
    """An RLModule restored from an RLlib checkpoint, acting on a batch of observations (no Ray needed).

    ``deterministic=True`` takes the mode of the action distribution (argmax, Gaussian
    mean); continuous actions are unsquashed and clipped to the action space as RLlib's
    env runners do (``normalize_actions=True``).
    """

    name = "rllib"

    def __init__(self, module: Any, action_space: gym.Space | None = None, deterministic: bool = True, normalize_actions: bool = True) -> None:
        self.module = module
        self.action_space = action_space if action_space is not None else getattr(module, "action_space", None)
        self.deterministic = deterministic
        self.normalize_actions = normalize_actions

    @classmethod
    def load(cls, checkpoint: str | Path, module_id: str | None = None, deterministic: bool = True, *, trust_agent_code: bool = False) -> RLlibAgent:
        """Load module ``module_id`` (default: the only one, or ``default_policy``) from an algorithm checkpoint.

        Outside the shipped zoo this needs ``trust_agent_code=True``: checkpoints hold pickles."""
        from deploy_envs.trust import check_agent_path

        check_agent_path(checkpoint, trust_agent_code, what="checkpoint")
        _require_ray()
        from ray.rllib.core.rl_module.rl_module import RLModule

        checkpoint = Path(checkpoint)
        if not checkpoint.exists():
            raise ValueError(f"checkpoint={str(checkpoint)!r} does not exist")
        mods = checkpoint_modules(checkpoint)
        if module_id is None:
            module_id = mods[0] if len(mods) == 1 else "default_policy"
        module = RLModule.from_checkpoint(str(_module_dir(checkpoint, module_id)))
        module.eval()
        agent = cls(module, deterministic=deterministic)
        agent.name = f"rllib:{module_id}"
        return agent

    def setup(self, env: Any) -> None:
        want = getattr(self.module, "observation_space", None)
        got = env.single_observation_space
        if want is not None and want.shape != got.shape:
            raise ValueError(f"the RLlib module expects observations of shape {want.shape}, but the env gives {got.shape}; was it trained on another env configuration?")
        if self.action_space is None:
            self.action_space = env.single_action_space

    def act(self, obs, episode_start):
        import torch
        _require_ray()
        from ray.rllib.core.columns import Columns
        from ray.rllib.utils.spaces.space_utils import unsquash_action

        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: torch.as_tensor(np.asarray(obs, np.float32))})
            if Columns.ACTIONS in out:
                actions = out[Columns.ACTIONS]
            else:
                dist = self.module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
                if self.deterministic:
                    dist = dist.to_deterministic()
                actions = dist.sample()
        actions = actions.cpu().numpy()
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            actions = actions.astype(space.dtype)
            if self.normalize_actions:
                actions = unsquash_action(actions, space)
            return np.clip(actions, space.low, space.high).astype(space.dtype)
        if isinstance(space, gym.spaces.Discrete):
            return actions.astype(np.int64) + int(space.start)
        return actions


def load_game_agents(checkpoint: str | Path, mapping: dict[str, str], deterministic: bool = True, *, trust_agent_code: bool = False) -> dict[str, RLlibAgent]:
    """One :class:`RLlibAgent` per role, following ``mapping`` (role -> policy id)."""
    return {role: RLlibAgent.load(checkpoint, pid, deterministic, trust_agent_code=trust_agent_code) for role, pid in mapping.items()}


# -------------------------------------------------------------- evaluation
#: per-copy info keys that are indices or labels, not measures: left out of the means
_NOT_MEASURES = ("sample_index", "true_label", "predicted_label", "round", "defense")


class _AgentPolicy:
    """An :class:`~deploy_envs.core.agents.Agent` as the batch policy
    :func:`deploy_envs.training.roles.evaluate_game` plays; counts the rounds it is asked for."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.rounds = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.rounds += len(obs)
        return self.agent.act(obs, np.zeros(len(obs), bool))


def _measure_keys(core: Any, role: str) -> list[str]:
    """The numeric per-copy info keys of ``role`` after one round of random actions in copy 0
    (the evaluation reseeds and resets every copy it plays, so this round leaves no trace)."""
    idx = np.zeros(1, np.int64)
    core.reset_indices(idx)
    acts = {r: np.asarray(space.sample())[None] for r, space in core.action_spaces.items()}
    _, _, _, _, infos = core.step_indices(idx, core.validate_actions(acts, 1))
    keys = []
    for k, v in infos[role].items():
        if k.startswith("_") or k in _NOT_MEASURES or f"_{k}" in infos[role]:
            continue
        arr = np.asarray(v)
        if arr.shape == (1,) and arr.dtype.kind in "biuf":
            keys.append(k)
    return keys


def evaluate_game(
    game_id: str,
    agents: dict[str, Agent],
    *,
    episodes: int = 100,
    seed: int = 0,
    game_kwargs: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Play ``episodes`` episodes of a game with one agent per role; return means.

    The rollout is :func:`deploy_envs.training.roles.evaluate_game` (the one game rollout loop
    of the suite: batched copies, episode ``e`` seeded ``seed + e``). Keys: ``return_<role>``
    (mean episode return per role) and its ``return_<role>_ci95``, ``length`` (mean rounds per
    episode), and for every numeric info key of the first role its mean (over episodes of the
    per-episode mean over rounds; e.g. ``fooled``, ``clean_cost``).
    """
    from deploy_envs.training.roles import evaluate_game as play
    from deploy_envs.training.roles import game_roles as core_roles
    from deploy_envs.training.roles import make_core

    episodes = int(check_positive("episodes", episodes, integer=True))
    core = make_core(game_id, min(16, episodes), dict(game_kwargs or {}))
    try:
        roles = tuple(core_roles(core))
        missing = [r for r in roles if r not in agents]
        if missing:
            raise ValueError(f"agents has no agent for role(s) {missing}; the game's roles are {list(roles)}")

        class _Spaces:  # what Agent.setup reads
            def __init__(self, role):
                self.single_observation_space = core.observation_spaces[role]
                self.single_action_space = core.action_spaces[role]

        for r in roles:
            agents[r].setup(_Spaces(r))
        keys = _measure_keys(core, roles[0])
        policies = {r: _AgentPolicy(agents[r]) for r in roles}
        res = play(game_id, policies, episodes, seed, core=core, num_envs=core.num_envs, info_keys=keys, info_roles=(roles[0],))
    finally:
        core.close()
    out: dict[str, float] = {}
    for r, v in res["returns"].items():
        out[f"return_{r}"], out[f"return_{r}_ci95"] = v["mean"], v["ci95"]
    out["length"] = policies[roles[0]].rounds / episodes
    out.update({k: res["info"][roles[0]][k]["mean"] for k in keys})
    return out


def train_rllib_agent(
    target_id: str,
    *,
    name: str,
    out_dir: Path,
    timesteps: int,
    env_kwargs: dict[str, Any] | None = None,
    eval_env_kwargs: dict[str, Any] | None = None,
    algorithm: str = "PPO",
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 16,
    policies: dict[str, str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    seed: int = 0,
    eval_episodes: int = 200,
    scenario: str | None = None,
    notes: str = "",
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    run_info: dict[str, Any] | None = None,
) -> AgentCard:
    """Train with RLlib, save the checkpoint to ``out_dir/rllib_checkpoint``, evaluate, write the card.

    Env agents are scored with :func:`deploy_envs.evaluation.evaluate` (the scorecard of
    every agent); game agents with :func:`evaluate_game`, each role played by its own policy.
    ``run_info``, when given, is updated with what :func:`train` returned (history, weights, env runners).
    """
    kind = check_target(target_id)
    env_kwargs = dict(env_kwargs or {})
    mapping = game_policies(game_roles(target_id, env_kwargs), policies) if kind == "game" else None
    out_dir = Path(out_dir)
    run = train(
        target_id, timesteps=timesteps, env_kwargs=env_kwargs, algorithm=algorithm, num_env_runners=num_env_runners,
        num_envs_per_env_runner=num_envs_per_env_runner, policies=mapping, hyperparameters=hyperparameters, seed=seed,
        checkpoint_dir=out_dir / CHECKPOINT_DIR, address=address, num_cpus=num_cpus, progress=progress,
    )
    if run_info is not None:
        run_info.update(run)
    eval_kwargs = dict(env_kwargs if eval_env_kwargs is None else eval_env_kwargs)
    eval_seed = 10_000 + seed
    if kind == "env":
        from deploy_envs.evaluation import evaluate

        agent = RLlibAgent.load(out_dir / CHECKPOINT_DIR, trust_agent_code=True)  # written by this run
        agent.name = name
        summary = evaluate(target_id, agent, episodes=eval_episodes, seed=eval_seed, env_kwargs=eval_kwargs).summary
    else:
        summary = evaluate_game(target_id, load_game_agents(out_dir / CHECKPOINT_DIR, mapping, trust_agent_code=True), episodes=eval_episodes, seed=eval_seed, game_kwargs=eval_kwargs)
    last = run["history"][-1]
    hyper = {
        "engine": "rllib",
        "num_env_runners": num_env_runners,
        "num_envs_per_env_runner": num_envs_per_env_runner,
        "env_runners_stepped": run["env_runners"][:1],
        **({"policies": mapping} if mapping else {}),
        **dict(hyperparameters or {}),
    }
    card = build_card(
        name=name,
        env_id=target_id,
        env_kwargs=env_kwargs,
        algorithm=f"RLlib {algorithm}",
        hyperparameters=hyper,
        timesteps=int(last["env_steps"]),
        num_envs=num_envs_per_env_runner * max(num_env_runners, 1),
        seed=seed,
        scenario=scenario,
        evaluations=[evaluation(summary, episodes=eval_episodes, seed=eval_seed, env_kwargs=eval_kwargs)],
        training={k: v for k, v in last.items() if isinstance(v, (int, float))},
        notes=notes,
        train_seconds=run["seconds"],
        device="cpu",
    )
    write_card(out_dir, card)
    return card


def is_rllib_agent_folder(folder: Path) -> bool:
    return (Path(folder) / CHECKPOINT_DIR).exists()


def load_rllib_zoo_agent(folder: Path, card: AgentCard, deterministic: bool = True, *, trust_agent_code: bool = False) -> Agent:
    """The agent of an RLlib zoo folder (env agents; for games use :func:`load_game_agents`)."""
    if card.env_id in GAME_CATALOG:
        raise ValueError(
            f"agent {card.name!r} is a policy set for the game {card.env_id} (roles {list(card.hyperparameters.get('policies', {}))}); "
            "evaluate it with `deploy-envs evaluate GAME --agent NAME` on the game"
        )
    agent = RLlibAgent.load(Path(folder) / CHECKPOINT_DIR, deterministic=deterministic, trust_agent_code=trust_agent_code)
    agent.name = card.name
    return agent


def load_game_zoo_agents(name_or_path: str, deterministic: bool = True, *, trust_agent_code: bool = False) -> tuple[dict[str, RLlibAgent], AgentCard]:
    """The per-role agents of an RLlib game agent in the zoo, and its card."""
    from deploy_envs.agent_zoo import read_card, resolve_agent_folder

    folder = resolve_agent_folder(name_or_path)
    card = read_card(folder)
    if card.env_id not in GAME_CATALOG or not is_rllib_agent_folder(folder):
        raise ValueError(f"agent={name_or_path!r} is not an RLlib policy set for a game (it was trained on {card.env_id} with {card.algorithm})")
    mapping = card.hyperparameters.get("policies") or {r: r for r in game_roles(card.env_id, card.env_kwargs)}
    agents = load_game_agents(folder / CHECKPOINT_DIR, mapping, deterministic, trust_agent_code=trust_agent_code)
    for role, a in agents.items():
        a.name = f"{card.name}:{role}"
    return agents, card


def evaluate_game_spec(game_id: str, spec: Any, *, episodes: int, seed: int, game_kwargs: dict[str, Any], trust_agent_code: bool = False) -> dict[str, float]:
    """Evaluate a scenario agent spec on a game: a zoo policy set (one policy per role) or a baseline in every role."""
    from deploy_envs.core.agents import make_baseline

    if spec.zoo:
        agents, card = load_game_zoo_agents(spec.zoo, trust_agent_code=trust_agent_code)
        if card.env_id != game_id:
            raise ValueError(f"agent {card.name!r} was trained on {card.env_id}, not {game_id}")
    elif spec.baseline:
        roles = game_roles(game_id, game_kwargs)
        agents = {r: make_baseline(spec.baseline, None, **spec.kwargs) for r in roles}
    else:
        raise ValueError(f"a game scenario agent needs 'zoo' (an RLlib policy set) or 'baseline' (played in every role); got policy={spec.policy!r}")
    return evaluate_game(game_id, agents, episodes=episodes, seed=seed, game_kwargs=game_kwargs)

"""An RLlib env runner that samples a deploy_envs native batch without per-copy bookkeeping.

Importing this module needs the optional extra ``rllib``.

RLlib's :class:`~ray.rllib.env.single_agent_env_runner.SingleAgentEnvRunner` keeps one
:class:`~ray.rllib.env.single_agent_episode.SingleAgentEpisode` per copy of the vector
env and, on every vector step, unbatches the env's output, calls ``add_env_step`` and
the episode callbacks once per copy, and runs its env-to-module and module-to-env
connector pipelines over those episodes. For a native batch whose own step costs a few
milliseconds for all copies, that bookkeeping costs more than the step.

:class:`NativeBatchEnvRunner` does the same work batched. Per vector step it makes one
observation tensor, one forward pass of the RLModule, draws the actions from the
module's action distribution exactly as RLlib's default ``GetActions`` connector does,
unsquashes or clips them for the env as ``NormalizeAndClipActions`` does, steps the
native batch and appends the batched arrays to per-call buffers. At the end of
``sample()`` it cuts the buffers into the same episode chunks the stock runner returns
(same ids across chunks, same lookback buffers, same terminated/truncated flags, same
extra model outputs), built straight from array slices in the dtypes ``to_numpy()``
gives, and logs the same sampling and episode metrics. A ``TorchRLModule`` whose public
forward calls are the base class's is put in eval mode once per ``sample()`` rather than
on every forward pass (the base class walks every submodule twice per call to do so).

It takes this path only where the result is the stock runner's: a single-agent
:class:`~deploy_envs.core.views.NativeVectorEnv` in gymnasium's next-step autoreset mode,
RLlib's default connector pipelines with nothing added, a stateless RLModule, no episode
callbacks, and sampling by timesteps with actions from the module. Anything else (for
example ``sample(num_episodes=...)`` for evaluation, or random actions) goes to the
stock runner's code, after a reset of the copies so the two paths never share an
episode. The info dicts of the env are not kept in the episodes of the fast path
(RLlib's learners do not read them); they are kept on the stock path.

:func:`deploy_envs.integrations.rllib.build_config` selects this runner for every env.
"""
from __future__ import annotations

import gc
import time
import uuid
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import DictInfoToList

from deploy_envs.core.extras import require

require("ray.rllib", extra="rllib", feature="the batched RLlib env runner")

from ray.rllib.callbacks.callbacks import RLlibCallback  # noqa: E402
from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule  # noqa: E402
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner  # noqa: E402
from ray.rllib.env.single_agent_episode import SingleAgentEpisode  # noqa: E402
from ray.rllib.env.utils.infinite_lookback_buffer import InfiniteLookbackBuffer  # noqa: E402
from ray.rllib.utils.metrics import WEIGHTS_SEQ_NO  # noqa: E402
from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action  # noqa: E402

from deploy_envs.core.views import NativeVectorEnv  # noqa: E402

_EPISODE_CALLBACKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end")


class _Chunk:
    """The open episode chunk of one copy: its id, start, lookback length and its data since then.

    The data are kept as segments of batched arrays (one segment per ``sample()`` call and
    field), so an episode is built with one concatenation per field, in the dtypes RLlib's
    ``to_numpy()`` gives the stock runner's lists.
    """

    __slots__ = ("id_", "t_started", "lookback", "obs", "actions", "rewards", "extra", "start_time")

    def __init__(self, id_: str, t_started: int, lookback: int, obs: list, actions: list, rewards: list, extra: dict[str, list], start_time: float) -> None:
        self.id_, self.t_started, self.lookback = id_, t_started, lookback
        self.obs, self.actions, self.rewards, self.extra = obs, actions, rewards, extra
        self.start_time = start_time

    @classmethod
    def new(cls, first_obs: np.ndarray, now: float) -> _Chunk:
        return cls(uuid.uuid4().hex, 0, 0, [first_obs[None]], [], [], {}, now)

    def steps(self) -> int:
        return sum(len(r) for r in self.rewards) - self.lookback


def _joined(segments: list[np.ndarray]) -> np.ndarray | list:
    """One array from a chunk's segments; no segment gives an empty list (an open buffer, as RLlib keeps it)."""
    if not segments:
        return []
    return segments[0] if len(segments) == 1 else np.concatenate(segments)


def _segments(data: np.ndarray | list) -> list[np.ndarray]:
    """A buffer's data as a chunk's segments (none when it is empty)."""
    return [data] if len(data) else []


class NativeBatchEnvRunner(SingleAgentEnvRunner):
    """A ``SingleAgentEnvRunner`` that samples a native batch in batched arrays (see the module docstring).

    A remote runner (``worker_index > 0``, an actor process of its own) freezes Python's cyclic
    garbage collector's view of everything alive once it is built (``gc.collect()`` then
    ``gc.freeze()``): about half a million objects of Ray, torch, RLlib, the module and the env
    that every full collection would otherwise walk again, stalling a ``sample()`` call for
    several times its usual length while the episodes it builds pile up. Objects made later are
    collected as usual. Set ``freeze_gc_in_remote_runners = False`` on a subclass to keep the
    collector as it is; a runner in the driver process (``worker_index == 0``) never touches it.
    """

    #: freeze the objects alive after construction in a remote runner's process (see the class docstring)
    freeze_gc_in_remote_runners: bool = True

    def __init__(self, *, config, **kwargs) -> None:
        super().__init__(config=config, **kwargs)
        if self.freeze_gc_in_remote_runners and (self.worker_index or 0) > 0:  # None or 0: the driver's runner
            gc.collect()
            gc.freeze()
        self._chunks: list[_Chunk | None] | None = None  # None: the fast path holds no episodes
        self._fast_obs: np.ndarray | None = None
        self._fast_ok = self.fast_path_reason() is None
        # the module's public forward calls are TorchRLModule's own, which only set eval mode around the private ones
        cls = type(self.module) if self.module is not None else None
        self._direct_forward = (cls is not None and issubclass(cls, TorchRLModule) and cls.forward_exploration is TorchRLModule.forward_exploration
                                and cls.forward_inference is TorchRLModule.forward_inference)

    # ---------------------------------------------------------------- eligibility
    def fast_path_reason(self) -> str | None:
        """Why this runner cannot take the batched path (``None``: it can)."""
        env = self.env
        if env is None:
            return "no env on this runner"
        inner = env.env if isinstance(env, DictInfoToList) else env
        if not isinstance(inner, NativeVectorEnv) or inner is not env.unwrapped:
            return "the env is not a bare deploy_envs native batch"
        if inner.autoreset_mode != AutoresetMode.NEXT_STEP:
            return "the native batch is not in next-step autoreset mode"
        if not isinstance(inner.single_observation_space, spaces.Box):
            return "the observation space is not a Box"
        if not isinstance(inner.single_action_space, (spaces.Box, spaces.Discrete)):
            return "the action space is neither a Box nor Discrete"
        cfg = self.config
        if cfg._env_to_module_connector is not None or cfg._module_to_env_connector is not None:
            return "custom connectors are configured"
        if not (cfg.add_default_connectors_to_env_to_module_pipeline and cfg.add_default_connectors_to_module_to_env_pipeline):
            return "the default connectors are switched off"
        if self.module is None or self.module.is_stateful():
            return "the RLModule is missing or stateful"
        if any(type(cb) is not RLlibCallback for cb in self._callbacks):
            return "callbacks are configured"
        if any(getattr(cfg, f"callbacks_{name}", None) for name in _EPISODE_CALLBACKS):
            return "episode callbacks are configured"
        if not self.episodes_to_numpy:
            return "episodes_to_numpy is off"
        return None

    # --------------------------------------------------------------------- sample
    def _sample(self, *, num_timesteps=None, num_episodes=None, explore, random_actions=False, force_reset=False):
        if not self._fast_ok or num_timesteps is None or random_actions:
            if self._chunks is not None:  # the stock path starts from fresh episodes
                self._chunks = None
                self._needs_initial_reset = True
                force_reset = True
            return super()._sample(num_timesteps=num_timesteps, num_episodes=num_episodes, explore=explore,
                                   random_actions=random_actions, force_reset=force_reset)
        return self._sample_batched(num_timesteps, explore, force_reset)

    def _reset_batched(self) -> None:
        obs, _ = self._try_env_reset(seed=self._seed if self._needs_initial_reset else None, options=None)
        self._needs_initial_reset = False
        self._ongoing_episodes_for_metrics.clear()
        self._ongoing_episodes = [None] * self.num_envs  # the stock path's episodes are dropped
        self._cached_to_module = None
        now = time.perf_counter()
        self._fast_obs = np.array(obs)
        self._chunks = [_Chunk.new(self._fast_obs[i], now) for i in range(self.num_envs)]
        self._fast_pending_reset = np.zeros(self.num_envs, dtype=bool)

    def _actions(self, obs: np.ndarray, explore: bool, t: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One forward pass: (actions as stored, actions for the env, extra model outputs), batched."""
        module = self.module
        batch = {Columns.OBS: torch.from_numpy(obs).to(self._device) if self._device is not None else torch.from_numpy(obs)}
        if self._direct_forward and not module.training:  # what forward_exploration/inference run, mode already set
            out = module._forward_exploration(batch, t=t) if explore else module._forward_inference(batch)
        else:
            out = module.forward_exploration(batch, t=t) if explore else module.forward_inference(batch)
        if Columns.ACTIONS not in out:  # as RLlib's GetActions connector
            dist_cls = module.get_exploration_action_dist_cls() if explore else module.get_inference_action_dist_cls()
            dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
            if not explore:
                dist = dist.to_deterministic()
            actions = dist.sample()
            out[Columns.ACTIONS] = actions
            if Columns.ACTION_LOGP not in out:
                out[Columns.ACTION_LOGP] = dist.logp(actions)
        out = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
        actions = out.pop(Columns.ACTIONS)
        space = self.env.single_action_space
        if self.config.normalize_actions:  # as RLlib's NormalizeAndClipActions connector
            for_env = unsquash_action(actions.copy(), space)
        elif self.config.clip_actions:
            for_env = clip_action(actions.copy(), space)
        else:
            for_env = actions
        return actions, for_env, out

    def _step_env(self, actions: np.ndarray):
        inner = self.env.env if isinstance(self.env, DictInfoToList) else self.env
        try:
            return inner.step(actions)
        except Exception:
            if not self.config.restart_failed_sub_environments:
                raise
            self.make_env()  # as the stock runner: a new env, reset, and the step's data dropped
            self._reset_batched()
            return None

    def _sample_batched(self, num_timesteps: int, explore: bool, force_reset: bool):
        if self._chunks is None or force_reset:
            self._reset_batched()
        # TorchRLModule's forward_exploration/inference switch the module to eval mode and back on
        # every call (two walks over its submodules); switch once per call instead
        module = self.module
        was_training = module.training
        if was_training and self._direct_forward:
            module.eval()
        try:
            return self._sample_steps(num_timesteps, explore)
        finally:
            if was_training and self._direct_forward:
                module.train()

    def _sample_steps(self, num_timesteps: int, explore: bool):
        """Step the batch until ``num_timesteps`` env steps are taken; the call's episode chunks."""
        ts = 0
        runners = self.config.num_env_runners or 1
        # the call's data, one batched array per vector step; cut into episodes at the end
        obs_seq, act_seq, rew_seq, started_seq, ended_seq, term_seq, trunc_seq = [self._fast_obs], [], [], [], [], [], []
        extra_seq: dict[str, list[np.ndarray]] = {}
        while ts < num_timesteps:
            t_global = (self.num_env_steps_sampled_lifetime // runners + ts) * runners
            actions, for_env, extra = self._actions(self._fast_obs, explore, t_global)
            result = self._step_env(for_env)
            if result is None:  # the env failed and was rebuilt: this call's data is dropped
                return self._sample_steps(num_timesteps, explore)
            next_obs, rewards, terms, truncs, _ = result
            next_obs = np.array(next_obs)  # a copy: the episodes keep rows of it
            started = self._fast_pending_reset  # these copies return a reset observation; their action was not used
            terms, truncs = np.asarray(terms, dtype=bool), np.asarray(truncs, dtype=bool)
            ended = ~started & (terms | truncs)
            ts += int((~started).sum())
            obs_seq.append(next_obs)
            act_seq.append(actions)
            rew_seq.append(np.asarray(rewards, dtype=np.float64))
            started_seq.append(started)
            ended_seq.append(ended)
            term_seq.append(terms)
            trunc_seq.append(truncs)
            for k, v in extra.items():
                extra_seq.setdefault(k, []).append(v)
            self._fast_pending_reset = ended
            self._fast_obs = next_obs
        return self._cut_episodes(obs_seq, act_seq, rew_seq, started_seq, ended_seq, term_seq, trunc_seq, extra_seq, ts)

    def _cut_episodes(self, obs_seq, act_seq, rew_seq, started_seq, ended_seq, term_seq, trunc_seq, extra_seq, ts: int):
        """The episode chunks of one call: finished episodes first, then the open ones (cut as the stock runner does)."""
        now = time.perf_counter()
        T = len(act_seq)
        obs, act, rew = np.stack(obs_seq), np.stack(act_seq), np.stack(rew_seq)
        started, ended, term, trunc = np.stack(started_seq), np.stack(ended_seq), np.stack(term_seq), np.stack(trunc_seq)
        extras = {k: np.stack(v) for k, v in extra_seq.items()}
        seq_no = self._weights_seq_no
        chunks = self._chunks
        done: list[tuple[int, SingleAgentEpisode]] = []  # (step, episode): ordered as the stock runner finishes them

        def extend(c: _Chunk, i: int, a: int, b: int) -> None:  # steps a..b-1 of copy i
            if b <= a:
                return
            c.obs.append(obs[a + 1 : b + 1, i])
            c.actions.append(act[a:b, i])
            c.rewards.append(rew[a:b, i])
            for k, v in extras.items():
                c.extra.setdefault(k, []).append(v[a:b, i])
            c.extra.setdefault(WEIGHTS_SEQ_NO, []).append(np.full(b - a, seq_no))

        for i in range(self.num_envs):
            c, s = chunks[i], 0
            for e in np.flatnonzero(ended[:, i]):
                if started[s, i]:
                    c, s = _Chunk.new(obs[s + 1, i], now), s + 1
                extend(c, i, s, e + 1)
                done.append((int(e), self._episode(c, bool(term[e, i]), bool(trunc[e, i]), now)))
                c, s = None, e + 1
            if s < T and started[s, i]:
                c, s = _Chunk.new(obs[s + 1, i], now), s + 1
            if c is not None:
                extend(c, i, s, T)
            chunks[i] = c
        done.sort(key=lambda item: item[0])  # stable: copies in index order within a step
        done_episodes = [ep for _, ep in done]  # built from arrays: already what to_numpy() gives

        # the open chunks: returned and continued, as the stock runner's cut()
        ongoing = []
        lookback = self.config.episode_lookback_horizon
        for i, c in enumerate(chunks):
            if c is None:  # ended at the last step; its next chunk starts with the reset observation
                continue
            ep = self._episode(c, False, False, now)
            cont = ep.cut(len_lookback_buffer=lookback)
            chunks[i] = _Chunk(cont.id_, cont.t_started, len(cont.rewards.data), _segments(cont.observations.data), _segments(cont.actions.data),
                               _segments(cont.rewards.data), {k: _segments(b.data) for k, b in cont.extra_model_outputs.items()}, now)
            if c.steps() == 0:
                continue
            self._ongoing_episodes_for_metrics[ep.id_].append(ep)
            ongoing.append(ep)
        self._done_episodes_for_metrics.extend(done_episodes)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=ts)
        self._increase_sampled_metrics(ts, len(done_episodes))
        return done_episodes + ongoing

    def _episode(self, c: _Chunk, terminated: bool, truncated: bool, now: float) -> SingleAgentEpisode:
        """The chunk as a numpy'd ``SingleAgentEpisode`` (finalized buffers, as ``to_numpy()`` leaves the stock runner's)."""
        lb = c.lookback
        obs, actions, rewards = _joined(c.obs), _joined(c.actions), _joined(c.rewards)
        ep = SingleAgentEpisode(
            id_=c.id_,
            observations=InfiniteLookbackBuffer(obs, lb),  # a buffer: the constructor tests a list's truth
            observation_space=self.env.single_observation_space,
            infos=[{} for _ in range(len(obs))],  # the fast path keeps no env infos (see the module docstring)
            actions=actions,
            action_space=self.env.single_action_space,
            rewards=rewards,
            extra_model_outputs={k: _joined(v) for k, v in c.extra.items()},
            terminated=terminated,
            truncated=truncated,
            t_started=c.t_started,
            len_lookback_buffer=lb,
        )
        ep._start_time, ep._last_step_time = c.start_time, now
        return ep

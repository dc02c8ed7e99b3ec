"""Recipe of agents/poisoning-ppo: SB3 PPO on Poisoning-v0's native batch via deploy_envs.training.sb3.train_sb3_agent.

Run from the repository root: ``python deploy_envs/agents/poisoning-ppo/train.py`` (one CPU thread, about 11 minutes).
A callback passed to train_sb3_agent monitors (progress lines, a checkpoint) and guards against the PPO ratio overflowing on the
2795-dimensional action: when an update leaves non-finite weights it puts back the last finite weights and Adam
state (kept every 5 rollouts), including after the last update. The notes are written into the card afterwards.
"""
import time
import numpy as np
import torch
torch.set_num_threads(1)
torch.distributions.Distribution.set_default_validate_args(False)  # let the guard below catch non-finite weights
from pathlib import Path
from stable_baselines3.common.callbacks import BaseCallback
from deploy_envs.training.sb3 import train_sb3_agent

t0 = time.time()
class Progress(BaseCallback):
    good = None
    restores = 0

    def __init__(self):
        super().__init__()
        self.k = 0

    def _on_step(self):
        return True

    def _on_rollout_start(self):  # guard: if an update left non-finite weights, go back to the last finite ones
        import copy
        pol = self.model.policy
        finite = all(torch.isfinite(p).all() for p in pol.parameters())
        if finite and self.k % 5 == 0:
            self.good = (copy.deepcopy(pol.state_dict()), copy.deepcopy(pol.optimizer.state_dict()))
        if not finite:
            self.restores += 1
            print(f"non-finite weights at {self.num_timesteps}: restoring the last finite ones (restore {self.restores})", flush=True)
            pol.load_state_dict(self.good[0]); pol.optimizer.load_state_dict(self.good[1])
    def _on_training_end(self):  # the last update may leave non-finite weights too
        self._on_rollout_start()

    def _on_rollout_end(self):
        self.k += 1
        if self.k % 20 == 0:
            ep = list(self.model.ep_info_buffer)
            import gymnasium as gym
            ev = gym.make_vec("deploy_envs/Poisoning-v0", num_envs=1, **ENV_KWARGS); o, _ = ev.reset(seed=0)
            a, _ = self.model.predict(o, deterministic=True); o, r, *_ = ev.step(a)
            print(f"{self.num_timesteps} steps {time.time()-t0:.0f}s mean train return {np.mean([e['r'] for e in ep]):.3f} deterministic return {r[0]:.2f}", flush=True)
        if self.k % 100 == 0:
            self.model.save("/tmp/poisoning-ppo-checkpoint.zip")
PROG = [Progress()]
ENV_KWARGS = {"points_per_step": 43}
card = train_sb3_agent(
    "deploy_envs/Poisoning-v0", name="poisoning-ppo", out_dir=Path(__file__).resolve().parent,
    env_kwargs=ENV_KWARGS, algorithm="PPO", timesteps=30_720, num_envs=64, seed=0,
    hyperparameters={"n_steps": 4, "batch_size": 64, "n_epochs": 10, "learning_rate": 1e-3, "gamma": 0.0,
                     "gae_lambda": 1.0, "ent_coef": 0.0, "policy_kwargs": {"net_arch": [64], "log_std_init": 0.0}},
    eval_episodes=16, notes="(notes written after the evaluation)", callbacks=PROG,
)
print(card.evaluations, card.train_seconds, flush=True)
print("restores", PROG[0].restores)

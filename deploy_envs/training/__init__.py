"""Training: the SB3 entry (:mod:`deploy_envs.training.sb3`), alternating self-play
(:mod:`deploy_envs.training.selfplay`) and the card each trained agent ships with."""

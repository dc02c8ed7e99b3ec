"""Training: the SB3 entry (:mod:`deploy_envs.training.sb3`), alternating self-play
(:mod:`deploy_envs.training.selfplay`), the batched role adapter and game evaluator
(:mod:`deploy_envs.training.roles`), the game trainer PSRO (:mod:`deploy_envs.training.psro`)
and the card each trained agent ships with."""

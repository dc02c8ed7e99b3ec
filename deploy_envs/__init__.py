"""deploy_envs: the topics of deployable machine learning as Gymnasium and PettingZoo environments.

Importing the package registers every environment with Gymnasium under the
``deploy_envs/`` namespace::

    import gymnasium as gym
    import deploy_envs  # noqa: F401

    env = gym.make("deploy_envs/Evasion-v0")
    venv = gym.make_vec("deploy_envs/Evasion-v0", num_envs=64)   # the native batch
"""
from deploy_envs import topics as _topics  # noqa: F401  (registers the environments, games and baselines)
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game

__version__ = "0.1.0"
__all__ = ["ENV_CATALOG", "GAME_CATALOG", "make_game", "__version__"]

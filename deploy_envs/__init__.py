"""deploy_envs: the topics of deployable machine learning as Gymnasium and PettingZoo environments.

Importing the package registers every environment with Gymnasium under the
``deploy_envs/`` namespace::

    import gymnasium as gym
    import deploy_envs  # noqa: F401

    env = gym.make("deploy_envs/Evasion-v0")
    venv = gym.make_vec("deploy_envs/Evasion-v0", num_envs=64)   # the native batch
"""
import importlib.util as _util

#: the base install's packages (``dependencies`` in pyproject.toml; a test keeps the two equal), by import name
BASE_REQUIREMENTS = {
    "gymnasium": "gymnasium", "pettingzoo": "pettingzoo", "stable_baselines3": "stable-baselines3", "torch": "torch",
    "numpy": "numpy", "sklearn": "scikit-learn", "scipy": "scipy", "pydantic": "pydantic", "yaml": "pyyaml",
    "typer": "typer", "rich": "rich", "matplotlib": "matplotlib", "tqdm": "tqdm",
}


def _missing_base_requirements() -> list[str]:
    missing = []
    for module, dist in BASE_REQUIREMENTS.items():
        try:
            found = _util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked in sys.modules, or one without a spec
            found = False
        if not found:
            missing.append(dist)
    return missing


_missing = _missing_base_requirements()
if _missing:
    raise ImportError(
        f"deploy-envs needs {', '.join(_missing)}: part of its base install, not an optional extra "
        "(the suite is built on Gymnasium, PettingZoo, SB3 and torch); install it with: pip install deploy-envs"
    )

from deploy_envs import topics as _topics  # noqa: E402, F401  (registers the environments, games and baselines)
from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ENV_CATALOG", "GAME_CATALOG", "make_game", "__version__"]

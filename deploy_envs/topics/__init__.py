"""One package per topic: its environments, its game, its reference agents and their registration.

Importing this package registers every environment, game and baseline.
"""
from deploy_envs.topics import backdoor  # noqa: F401
from deploy_envs.topics import bandits  # noqa: F401
from deploy_envs.topics import data_extraction  # noqa: F401
from deploy_envs.topics import distribution_shift  # noqa: F401
from deploy_envs.topics import evasion  # noqa: F401
from deploy_envs.topics import explanation  # noqa: F401
from deploy_envs.topics import extraction  # noqa: F401
from deploy_envs.topics import gridworlds  # noqa: F401
from deploy_envs.topics import lending  # noqa: F401
from deploy_envs.topics import membership  # noqa: F401
from deploy_envs.topics import navigation  # noqa: F401
from deploy_envs.topics import poisoning  # noqa: F401
from deploy_envs.topics import privacy_audit  # noqa: F401
from deploy_envs.topics import reward_model_gaming  # noqa: F401
from deploy_envs.topics import training_control  # noqa: F401
from deploy_envs.topics import trojans  # noqa: F401

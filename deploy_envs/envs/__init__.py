"""Single-agent environments, one package per topic; importing registers them."""
from deploy_envs.envs import adversarial  # noqa: F401
from deploy_envs.envs import gridworlds  # noqa: F401
from deploy_envs.envs import fairness  # noqa: F401
from deploy_envs.envs import bandits  # noqa: F401
from deploy_envs.envs import model_api_attacks  # noqa: F401
from deploy_envs.envs import poisoning  # noqa: F401
from deploy_envs.envs import safety  # noqa: F401
from deploy_envs.envs import shift  # noqa: F401
from deploy_envs.envs import backdoor  # noqa: F401
from deploy_envs.envs import explanation  # noqa: F401
from deploy_envs.envs import training_control  # noqa: F401
from deploy_envs.envs import trojans  # noqa: F401

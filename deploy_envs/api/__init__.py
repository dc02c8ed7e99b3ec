"""The model API that the model-API attack environments query (and, later, its HTTP server)."""
from deploy_envs.api.model_api import DEFENSES, OUTPUTS, Answer, BatchAnswer, ModelAPI, PradaDetector

__all__ = ["DEFENSES", "OUTPUTS", "Answer", "BatchAnswer", "ModelAPI", "PradaDetector"]

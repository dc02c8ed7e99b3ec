"""Reference explainers for ``deploy_envs/Explanation-v0``.

Each agent turns an attribution map (computed with Captum, see
:mod:`deploy_envs.topics.explanation.attribution`) into a feature ranking at the
start of an episode, and plays it: its action is the same score vector every step
(rank 1 -> 1.0, last -> -1.0), so the env removes (deletion) or reveals
(sufficiency) features in that order.

| name | ranking |
|---|---|
| ``random_order`` | a uniformly random permutation per episode (seeded): the floor |
| ``saliency`` | absolute input gradient (Simonyan et al. 2014) |
| ``integrated_gradients`` | integrated gradients from the env's replacement input (Sundararajan et al. 2017) |
| ``occlusion`` | confidence drop when a patch is replaced (Zeiler & Fergus 2014) |
| ``shap`` | Shapley value sampling over the env's features (Strumbelj & Kononenko 2010) |

The explainers are white-box: they read the victim from ``env.unwrapped.core`` in
:meth:`setup` (the setting of the deletion metric, Petsiuk et al. 2018). With
``model="randomized"`` they explain a copy of the victim with re-initialized
weights instead (Adebayo et al. 2018): a method whose ranking then still scores
well on the trained victim is not explaining the model.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deploy_envs.core.agents import register_baseline
from deploy_envs.core.agents import Agent
from deploy_envs.core.validation import check_choice
from deploy_envs.topics.explanation.attribution import (
    METHODS,
    attribute,
    feature_scores,
    randomize_model,
    ranking,
)
from deploy_envs.topics.explanation.features import scores_from_ranking

ENV_ID = "deploy_envs/Explanation-v0"
MODELS = ("trained", "randomized")


class ExplanationAgent(Agent):
    """Base: finds new episodes, asks :meth:`rank` for their feature order, replays it as scores."""

    def __init__(self, seed: int | None = 0) -> None:
        self.seed = seed

    def setup(self, env: Any) -> None:
        core = getattr(env.unwrapped, "core", None)
        needed = ("obs_slices", "num_features", "feature_of_pixel", "victim", "baseline_images")
        if core is None or any(not hasattr(core, a) for a in needed):
            raise ValueError(f"env={env!r} is not an {ENV_ID} env: its unwrapped.core lacks {', '.join(needed)}")
        self.core = core
        self.slices = dict(core.obs_slices)
        self.F = int(core.num_features)
        self.rng = np.random.default_rng(self.seed)
        self.scores = np.zeros((int(core.num_envs), self.F), np.float32)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        single = np.ndim(obs) == 1
        obs = np.atleast_2d(np.asarray(obs, np.float32))
        if len(obs) != len(self.scores):
            self.scores = np.zeros((len(obs), self.F), np.float32)
        start = np.broadcast_to(np.asarray(episode_start, bool), (len(obs),))
        start = start | (obs[:, self.slices["progress"]][:, 0] <= 0.0)
        if start.any():
            idx = np.flatnonzero(start)
            self.scores[idx] = scores_from_ranking(self.rank(obs[idx]))
        out = self.scores.copy()
        return out[0] if single else out

    def rank(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandomOrder(ExplanationAgent):
    """A uniformly random feature order per episode (seeded): the floor a faithful method must beat."""

    name = "random_order"

    def rank(self, obs):
        return np.stack([self.rng.permutation(self.F) for _ in range(len(obs))])


class AttributionExplainer(ExplanationAgent):
    """Ranks features by a Captum attribution of the victim's predicted class (highest first)."""

    def __init__(
        self,
        method: str = "integrated_gradients",
        *,
        model: str = "trained",
        seed: int | None = 0,
        ig_steps: int = 32,
        shap_samples: int = 10,
    ) -> None:
        super().__init__(seed)
        self.method = check_choice("method", method, METHODS)
        self.model_kind = check_choice("model", model, MODELS)
        self.ig_steps = ig_steps
        self.shap_samples = shap_samples
        self.name = method if model == "trained" else f"{method}_randomized"

    def setup(self, env: Any) -> None:
        super().setup(env)
        model = self.core.victim.model
        self.model = model if self.model_kind == "trained" else randomize_model(model, "full", seed=self.seed or 0)

    def rank(self, obs):
        x = obs[:, self.slices["input"]]
        target = obs[:, self.slices["prediction"]].argmax(1)
        core = self.core
        a = attribute(
            self.model, x, target, self.method,
            image_shape=tuple(core.image_shape), baselines=core.baseline_images(x), patch_size=core.patch_size,
            ig_steps=self.ig_steps, shap_samples=self.shap_samples, seed=self.seed or 0,
        )
        return ranking(feature_scores(a, core.feature_of_pixel, self.F))


def _method_factory(method: str):
    def make(**kwargs) -> AttributionExplainer:
        return AttributionExplainer(method, **kwargs)

    return make


register_baseline("random_order", RandomOrder, envs=(ENV_ID,), summary="uniformly random feature order per episode")
register_baseline("saliency", _method_factory("saliency"), envs=(ENV_ID,), summary="order by |input gradient| (Captum Saliency)", extra="interpret")
register_baseline(
    "integrated_gradients", _method_factory("integrated_gradients"), envs=(ENV_ID,),
    summary="order by integrated gradients from the replacement input (Captum)", extra="interpret",
)
register_baseline("occlusion", _method_factory("occlusion"), envs=(ENV_ID,), summary="order by patch occlusion (Captum Occlusion)", extra="interpret")
register_baseline("shap", _method_factory("shap"), envs=(ENV_ID,), summary="order by sampled Shapley values over the env's features (Captum)", extra="interpret")

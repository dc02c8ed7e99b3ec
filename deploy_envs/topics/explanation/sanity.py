"""The model-parameter randomization test of Adebayo et al. 2018 ("Sanity Checks for Saliency Maps").

An explanation method that explains the *model* must change when the model's
weights are replaced by random ones. For each method this module computes the
attribution maps of the trained victim and of randomized copies (cascading from
the top layer down, and all layers at once) on the same inputs and the same
target class (the trained victim's prediction), and reports the Spearman rank
correlation (``scipy.stats.spearmanr``) between the two maps per input, of the
signed maps and of their absolute values (the paper shows both). A correlation
near 1 means the map does not depend on what the model learned; the paper finds
gradient-based maps of trained and random models visually similar for some methods
(e.g. Guided Backprop) and clearly different for plain gradients and IG on MNIST.

:func:`write_randomization_table` is a scenario ``plots`` hook that writes the table
as markdown (and JSON beside it); :func:`plot_deletion_curves` draws the mean
deletion curves of a scenario's agents.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from deploy_envs.core.rendering import save_figure
from deploy_envs.core.validation import check_choice, check_positive
from deploy_envs.topics.evasion.victim import Victim
from deploy_envs.topics.explanation.attribution import (
    METHODS,
    attribute,
    parameter_layers,
    randomize_model,
)
from deploy_envs.topics.explanation.features import REPLACEMENTS, replacement_images

logger = logging.getLogger(__name__)


def _spearman_rows(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b``, over the entries in ``mask``
    (all by default); 0 where a row is constant."""
    out = np.zeros(len(a))
    for i in range(len(a)):
        ai, bi = (a[i], b[i]) if mask is None else (a[i][mask[i]], b[i][mask[i]])
        if len(ai) < 3 or np.ptp(ai) == 0 or np.ptp(bi) == 0:
            continue
        out[i] = spearmanr(ai, bi).statistic
    return out


def randomization_test(
    methods: tuple[str, ...] | list[str] = METHODS,
    *,
    dataset: str = "digits",
    victim: str = "standard",
    n_inputs: int = 64,
    replacement: str = "zero",
    seed: int = 0,
    ig_steps: int = 32,
    shap_samples: int = 10,
) -> dict[str, Any]:
    """Spearman rank correlation between attributions of the trained and randomized victim, per method.

    Returns ``{"methods": {method: {"full": {"signed", "abs"}, "cascading": [{"layers", "layer", "signed", "abs"}, ...]}},
    "n_inputs", "layers"}`` with means over ``n_inputs`` test inputs drawn with ``seed``.
    """
    for m in methods:
        check_choice("method", m, METHODS)
    check_choice("replacement", replacement, REPLACEMENTS)
    n_inputs = check_positive("n_inputs", n_inputs, integer=True)
    v = Victim.build(victim, dataset=dataset)
    shape = tuple(v.image_shape)
    images = v.images.reshape(len(v.labels), -1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(n_inputs, len(images)), replace=False)
    x = images[pick]
    mean_image = v.dataset.x_train.reshape(len(v.dataset.x_train), -1).mean(0)
    base = replacement_images(x, replacement, shape, mean_image)
    target = v.predict(x)
    layer_names = {id(m): name for name, m in v.model.named_modules()}
    layers = [layer_names[id(m)] for m in parameter_layers(v.model)]
    kw = {"image_shape": shape, "baselines": base, "patch_size": 1, "ig_steps": ig_steps, "shap_samples": shap_samples, "seed": seed}
    out: dict[str, Any] = {"n_inputs": len(x), "layers": layers, "victim": v.name, "replacement": replacement, "methods": {}}
    # pixels where the input differs from the baseline: elsewhere IG, occlusion and Shapley
    # sampling are 0 for any model, which alone makes their |maps| correlate
    changed = np.abs(x - base) > 1e-6
    models = [(j, randomize_model(v.model, "cascading", layers=j, seed=seed)) for j in range(1, len(layers) + 1)]
    for m in methods:
        a_trained = attribute(v.model, x, target, m, **kw)
        stages = []
        for j, rmodel in models:
            a_rand = attribute(rmodel, x, target, m, **kw)
            stages.append({
                "layers": j, "layer": layers[j - 1],
                "signed": float(_spearman_rows(a_trained, a_rand).mean()),
                "abs": float(_spearman_rows(np.abs(a_trained), np.abs(a_rand)).mean()),
                "abs_changed": float(_spearman_rows(np.abs(a_trained), np.abs(a_rand), changed).mean()),
            })
        # cascading to the last layer re-initializes every layer: the full randomization
        out["methods"][m] = {"full": {k: stages[-1][k] for k in ("signed", "abs", "abs_changed")}, "cascading": stages}
        logger.info("randomization test %s: full signed %.3f abs %.3f", m, stages[-1]["signed"], stages[-1]["abs"])
    return out


def randomization_markdown(result: dict[str, Any]) -> str:
    """The result of :func:`randomization_test` as a markdown table."""
    layers = result["layers"]
    head = "| method | full: Spearman (signed) | full: Spearman (abs) | full: abs, changed pixels | " + " | ".join(
        f"top {j} ({name}) abs" for j, name in enumerate(layers, 1)
    ) + " |"
    sep = "|---" * (4 + len(layers)) + "|"
    rows = [head, sep]
    for m, r in result["methods"].items():
        casc = " | ".join(f"{s['abs']:.3f}" for s in r["cascading"])
        f = r["full"]
        rows.append(f"| {m} | {f['signed']:.3f} | {f['abs']:.3f} | {f['abs_changed']:.3f} | {casc} |")
    note = (
        f"\nMean Spearman rank correlation over {result['n_inputs']} {result['victim']} test inputs between the "
        f"attribution map of the trained victim and of a copy with re-initialized weights (cascading from the "
        f"logits down; the last column is every layer, the full randomization). Replacement/baseline: "
        f"{result['replacement']}. 'changed pixels': only the pixels where the input differs from the "
        f"baseline (elsewhere IG, occlusion and Shapley sampling give 0 for any model).\n"
    )
    return "\n".join(rows) + "\n" + note


def write_randomization_table(path: str | Path, **kwargs: Any) -> Path:
    """Scenario ``plots`` hook: run :func:`randomization_test` and write the markdown table (and ``.json``)."""
    path = Path(path)
    result = randomization_test(**kwargs)
    path.write_text(randomization_markdown(result))
    path.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return path


def deletion_curves(agent_names: list[str], *, episodes: int = 64, seed: int = 0, env_kwargs: dict | None = None) -> dict[str, np.ndarray]:
    """Mean confidence curve of each named baseline over ``episodes`` deletion episodes (the same inputs for all)."""
    import gymnasium as gym

    from deploy_envs.core.agents import make_baseline

    env_id = "deploy_envs/Explanation-v0"
    out = {}
    for name in agent_names:
        env = gym.make_vec(env_id, num_envs=episodes, **{**(env_kwargs or {}), "mode": "deletion"})
        agent = make_baseline(name, env_id)
        agent.setup(env)
        obs, _ = env.reset(seed=seed)
        start = np.ones(episodes, bool)
        while True:
            obs, _, term, trunc, info = env.step(agent.act(obs, start))
            start[:] = False
            if (term | trunc).all():
                out[name] = info["confidence_curve"].mean(0)
                break
        env.close()
    return out


def plot_deletion_curves(path: str | Path, scenario: Any = None, agents: list[str] | None = None, episodes: int = 64) -> Path:
    """Scenario ``plots`` hook: the mean deletion curves of the scenario's baseline agents, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_kwargs = dict(scenario.env_kwargs) if scenario is not None else {}
    if agents is None:
        agents = [s.baseline for s in scenario.agents.values() if s.baseline] if scenario is not None else list(METHODS)
    curves = deletion_curves(agents, episodes=episodes, seed=scenario.protocol.seed if scenario else 0, env_kwargs=env_kwargs)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in curves.items():
        xs = np.linspace(0, 1, len(c))
        ax.plot(xs, c, label=f"{name} (AUC {np.trapezoid(c, xs):.3f})")
    ax.set_xlabel("fraction of features deleted")
    ax.set_ylabel("confidence in the original prediction")
    ax.set_title("Deletion curves (Petsiuk et al. 2018)")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)

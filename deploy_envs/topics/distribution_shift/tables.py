"""Accuracy of zoo models under each corruption and severity (the corruption table).

:func:`corruption_table` evaluates each model on the whole test split of its dataset,
corrupted at each severity (one fixed draw of noise and rotation signs per seed), and
returns one row per (model, corruption, severity) plus a ``clean`` row per model.
Run ``python -m deploy_envs.topics.distribution_shift.tables`` to print the table for the standard
and the adversarially trained digits models (the comparison of Yin et al. 2019, "A
Fourier Perspective on Model Robustness in Computer Vision", NeurIPS: adversarial
training helps against high-frequency corruptions such as noise and hurts on
low-frequency ones such as contrast and fog).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from deploy_envs.data import load_dataset
from deploy_envs.topics.distribution_shift.corruptions import CORRUPTIONS, SEVERITIES, check_corruption, check_severity, corrupt
from deploy_envs.models.zoo import load_model, resolve_name

logger = logging.getLogger(__name__)


def corruption_table(
    model_names: Sequence[str] = ("digits-standard", "digits-madry"),
    severities: Sequence[int] = SEVERITIES,
    *,
    corruptions: Sequence[str] = CORRUPTIONS,
    dataset: str = "digits",
    split: str = "test",
    seed: int = 0,
) -> list[dict]:
    """Rows ``{"model", "corruption", "severity", "accuracy", "mean_confidence", "n"}``.

    ``model_names``: zoo names (``"digits-standard"``) or short names (``"standard"``).
    The clean accuracy is the row with ``corruption="clean"`` and ``severity=0``.
    """
    if isinstance(model_names, str):
        model_names = (model_names,)
    severities = [check_severity(s, "severities") for s in severities]
    corruptions = [check_corruption(c, "corruptions", allow_label_shift=False) for c in corruptions]
    if split not in ("test", "train"):
        raise ValueError(f"split={split!r} is not allowed; choose 'test' or 'train'")
    ds = load_dataset(dataset)
    x = torch.from_numpy(ds.x_test if split == "test" else ds.x_train)
    y = ds.y_test if split == "test" else ds.y_train
    rows = []
    for short in model_names:
        name = resolve_name(short, dataset)
        model = load_model(name).eval()

        def score(xc: torch.Tensor) -> tuple[float, float]:
            with torch.no_grad():
                p = torch.softmax(model(xc), 1).numpy()
            return float((p.argmax(1) == y).mean()), float(p.max(1).mean())

        acc, conf = score(x)
        rows.append({"model": name, "corruption": "clean", "severity": 0, "accuracy": acc, "mean_confidence": conf, "n": len(y)})
        for c in corruptions:
            for s in severities:
                rng = np.random.default_rng([seed, CORRUPTIONS.index(c), s])
                acc, conf = score(corrupt(x, c, s, rng=rng))
                rows.append({"model": name, "corruption": c, "severity": s, "accuracy": acc, "mean_confidence": conf, "n": len(y)})
        logger.info("corruption table: %s done", name)
    return rows


def format_table(rows: list[dict], metric: str = "accuracy") -> str:
    """Markdown: one line per (model, corruption), one column per severity."""
    sevs = sorted({r["severity"] for r in rows if r["severity"] > 0})
    lines = ["| model | corruption | clean | " + " | ".join(f"s{s}" for s in sevs) + " |", "|---|---|---|" + "---|" * len(sevs)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for m in models:
        clean = next(r[metric] for r in rows if r["model"] == m and r["corruption"] == "clean")
        for c in dict.fromkeys(r["corruption"] for r in rows if r["model"] == m and r["corruption"] != "clean"):
            vals = {r["severity"]: r[metric] for r in rows if r["model"] == m and r["corruption"] == c}
            lines.append(f"| {m} | {c} | {clean:.3f} | " + " | ".join(f"{vals[s]:.3f}" for s in sevs) + " |")
    return "\n".join(lines)


def compare_models(rows: list[dict], a: str, b: str) -> list[dict]:
    """Per corruption: mean accuracy over severities of ``a`` and ``b`` and the difference ``b - a``."""
    out = []
    for c in dict.fromkeys(r["corruption"] for r in rows if r["corruption"] != "clean"):
        acc_a = np.mean([r["accuracy"] for r in rows if r["model"] == a and r["corruption"] == c])
        acc_b = np.mean([r["accuracy"] for r in rows if r["model"] == b and r["corruption"] == c])
        out.append({"corruption": c, a: float(acc_a), b: float(acc_b), "difference": float(acc_b - acc_a)})
    return out


if __name__ == "__main__":  # pragma: no cover - a report, not library code
    table = corruption_table()
    print(format_table(table))
    print()
    for r in compare_models(table, "digits-standard", "digits-madry"):
        print(f"| {r['corruption']} | {r['digits-standard']:.3f} | {r['digits-madry']:.3f} | {r['difference']:+.3f} |")

"""Gold and proxy reward against sqrt(KL): the over-optimization curves of Gao et al. (2022), small.

:func:`goodhart_curves` evaluates best-of-n (``n`` over :data:`BON_NS`) and the shipped PPO
policies (``kl_coef`` over :data:`PPO_KL_COEFS`) for each reward model (``comparisons`` over
:data:`SHIPPED_COMPARISONS`) on the env, and records mean ``expected_proxy``, ``expected_gold``
(exact expectations under the policy per prompt) and ``kl`` with 95% intervals over the prompts.
:func:`peak` locates the gold peak; :func:`fit_bon` fits Gao et al.'s best-of-n form
``gold - gold(0) = d (alpha - beta d)`` with ``d = sqrt(KL)``. :func:`plot_goodhart` draws the
figure (a scenario plot function).

``python -m deploy_envs.topics.reward_model_gaming.curves`` writes
``benchmarks/results/reward_model_gaming.json``; with ``--train`` it first retrains the shipped
reward models and PPO policies.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from deploy_envs.core.rendering import save_figure
from deploy_envs.topics.reward_model_gaming.baselines import PPO_HYPERPARAMETERS, PPO_KL_COEFS
from deploy_envs.topics.reward_model_gaming.reward_model import SHIPPED_COMPARISONS

log = logging.getLogger(__name__)

ENV_ID = "deploy_envs/RewardModelGaming-v0"
BON_NS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RESULTS = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "reward_model_gaming.json"


def _point(agent: Any, comparisons: int, prompts: int, seed: int) -> dict[str, Any]:
    from deploy_envs.evaluation import evaluate

    card = evaluate(ENV_ID, agent, episodes=prompts, seed=seed, env_kwargs={"comparisons": comparisons})
    out: dict[str, Any] = {}
    for key in ("expected_proxy", "expected_gold", "kl"):
        v = np.array([r[key] for r in card.records])
        half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
        out[key] = float(v.mean())
        out[f"{key}_ci95"] = [float(v.mean() - half), float(v.mean() + half)]
    out["sqrt_kl"] = float(np.sqrt(max(out["kl"], 0.0)))
    return out


def goodhart_curves(comparisons: tuple[int, ...] = SHIPPED_COMPARISONS, prompts: int = 1024, seed: int = 0, ns: tuple[int, ...] = BON_NS, kl_coefs: tuple[float, ...] = PPO_KL_COEFS) -> dict[str, Any]:
    """Curves of best-of-n and PPO for each reward model: ``{"best_of_n": {c: [points]}, "ppo": {c: [points]}}``."""
    from deploy_envs.topics.reward_model_gaming.baselines import BestOfNPolicy, KLPPOPolicy

    out: dict[str, Any] = {"best_of_n": {}, "ppo": {}, "prompts": prompts, "seed": seed}
    for c in comparisons:
        out["best_of_n"][str(c)] = [{"n": n, **_point(BestOfNPolicy(n), c, prompts, seed)} for n in ns]
        out["ppo"][str(c)] = [{"kl_coef": b, **_point(KLPPOPolicy(b), c, prompts, seed)} for b in kl_coefs]
    return out


def peak(points: list[dict[str, Any]]) -> dict[str, float]:
    """The point of highest gold: its sqrt(KL) and gold, and the gold at the largest KL."""
    pts = sorted(points, key=lambda p: p["kl"])
    best = max(pts, key=lambda p: p["expected_gold"])
    return {"sqrt_kl": best["sqrt_kl"], "gold": best["expected_gold"], "gold_at_max_kl": pts[-1]["expected_gold"], "max_sqrt_kl": pts[-1]["sqrt_kl"]}


def fit_bon(points: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares ``alpha, beta`` of ``gold - gold(0) = d (alpha - beta d)`` (Gao et al. 2022, best-of-n)."""
    d = np.array([p["sqrt_kl"] for p in points])
    y = np.array([p["expected_gold"] for p in points]) - points[0]["expected_gold"]
    A = np.stack([d, -(d**2)], 1)
    (alpha, beta), *_ = np.linalg.lstsq(A, y, rcond=None)
    return {"alpha": float(alpha), "beta": float(beta), "fitted_peak_sqrt_kl": float(alpha / (2 * beta)) if beta > 0 else float("inf")}


def summarize(curves: dict[str, Any]) -> dict[str, Any]:
    """Peaks per method and reward model, and the best-of-n fits."""
    s: dict[str, Any] = {}
    for method in ("best_of_n", "ppo"):
        s[method] = {c: peak(pts) for c, pts in curves[method].items()}
    s["best_of_n_fit"] = {c: fit_bon(pts) for c, pts in curves["best_of_n"].items()}
    return s


def plot_goodhart(path: str | Path, curves: dict[str, Any] | None = None, prompts: int = 512) -> Path:
    """Gold (solid) and proxy (dashed) against sqrt(KL), best-of-n and PPO, one colour per reward model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if curves is None:
        curves = json.loads(RESULTS.read_text())["curves"] if RESULTS.exists() else goodhart_curves(prompts=prompts)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = ["tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple"]
    for ax, method, title in zip(axes, ("best_of_n", "ppo"), ("best-of-n", "PPO with a KL penalty")):
        for colour, (c, pts) in zip(colours, curves[method].items()):
            pts = sorted(pts, key=lambda p: p["kl"])
            d = [p["sqrt_kl"] for p in pts]
            ax.plot(d, [p["expected_gold"] for p in pts], "-o", color=colour, ms=3, label=f"gold, RM on {c} comparisons")
            ax.plot(d, [p["expected_proxy"] for p in pts], "--", color=colour, alpha=0.7, label=f"proxy, RM on {c}")
        ax.set_title(title)
        ax.set_xlabel("sqrt(KL(policy || reference)) [sqrt(nats)]")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("reward (proxy standardized)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Reward model over-optimization (after Gao, Schulman, Hilton 2022)")
    return save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Goodhart curves of RewardModelGaming-v0")
    p.add_argument("--train", action="store_true", help="retrain the shipped reward models and PPO policies first")
    p.add_argument("--train-ppo", action="store_true", help="retrain the shipped PPO policies first (on the shipped reward models)")
    p.add_argument("--prompts", type=int, default=1024)
    p.add_argument("--plot", default=str(RESULTS.with_suffix(".png")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.train or args.train_ppo:
        import torch
        from tqdm.auto import tqdm

        from deploy_envs.topics.reward_model_gaming import reward_model as rm
        from deploy_envs.topics.reward_model_gaming.baselines import save_ppo_policy, train_kl_ppo

        torch.set_num_threads(1)
        if args.train:
            for c in SHIPPED_COMPARISONS:
                rm.save_shipped(rm.train_reward_model(c))
            rm.get_reward_model.cache_clear()
        for c in SHIPPED_COMPARISONS:
            for b in tqdm(PPO_KL_COEFS, desc=f"PPO on the RM of {c} comparisons"):
                save_ppo_policy(train_kl_ppo(c, b, **PPO_HYPERPARAMETERS), c, b)
    curves = goodhart_curves(prompts=args.prompts)
    summary = summarize(curves)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"env": ENV_ID, "ppo_hyperparameters": PPO_HYPERPARAMETERS, "summary": summary, "curves": curves}, indent=2) + "\n")
    plot_goodhart(args.plot, curves)
    for method in ("best_of_n", "ppo"):
        for c, pk in summary[method].items():
            log.info("%s, RM on %s comparisons: gold peaks at sqrt(KL) %.2f (%.3f), %.3f at sqrt(KL) %.2f", method, c, pk["sqrt_kl"], pk["gold"], pk["gold_at_max_kl"], pk["max_sqrt_kl"])


if __name__ == "__main__":
    main()

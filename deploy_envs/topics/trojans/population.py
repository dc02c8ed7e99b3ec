"""The population of digits classifiers that ``TrojanDetection-v0`` draws from: clean and trojaned.

Every model is a small ReLU MLP on the flattened digits, upsampled from 8x8 to 16x16
bilinearly (``256 -> 64 -> 10``; :func:`load_images`),
trained together with all others in one batched run (stacked weights, one
``torch.baddbmm`` per layer over the population: :meth:`deploy_envs.topics.backdoor.mlp.BatchedMLP.forward`).
Each model sees its own random 85% subset of the training split and its own
random initialisation, so clean models differ from each other as trojaned ones do.

A trojaned model is trained on data of which ``poison_fraction`` of the points of
the classes other than its target were stamped with its trigger and relabelled to
the target (BadNets: Gu, Dolan-Gavitt & Garg 2017). Triggers vary in kind, shape,
position, pattern and target class:

* ``patch``: a ``p x p`` patch (``p`` in ``patch_sizes``) at a random position, with a
  random binary pattern (at least half of its pixels white) and a mask of 1 (the
  BadNets stamp);
* ``blend``: a whole-image random pattern mixed in with opacity ``alpha`` (Chen et
  al. 2017, blended injection); its true mask is the whole image.

Why 16x16: Neural Cleanse (Wang et al. 2019) looks for a class whose smallest
reversed trigger is much smaller than the other classes'. On the 8x8 digits a clean
model already has a 5-6 pixel "natural trigger" for some class (5 above all; the
median class needs ~9), as small as a 2-3 px BadNets patch, so the anomaly index
separated patch-trojaned from clean models with an AUROC of only 0.69 (0.78 with
:func:`deploy_envs.topics.trojans.baselines.neural_cleanse` as it is now). On the
upsampled images natural triggers grow with the image (median ~25 px of mask) while
the planted patches stay 2-3 px wide, which is the regime of the paper (small
triggers on 32x32 or larger images). The AUROC depends on the clean probe set: over 8
probe sets it is 0.98 [0.96, 1.00] clean vs patch (range 0.91-1.00) and 0.97 [0.93, 0.99]
clean vs blend (range 0.86-1.00), from ``scenarios/results/trojan_neural_cleanse.json``.

The stamping is :func:`deploy_envs.topics.backdoor.triggers.apply`. Weights are
stored as float16 (about 1.7 MB for the whole population), and every metric in
the manifest is measured on the stored float16 weights, so a loaded model is the
measured one. The manifest (``manifest.json``) records per model its recipe, seed,
label, target, the sha256 of its trigger mask, its clean test accuracy, its attack
success rate and the sha256 of its weights; :func:`load_population` verifies the
hashes.

Rebuild (minutes on CPU, deterministic for a given torch build and thread count)::

    python -m deploy_envs.topics.trojans.population build            # writes population/
    python -m deploy_envs.topics.trojans.population build --check    # rebuild in memory, compare with the shipped files
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deploy_envs.core.validation import check_number, check_positive
from deploy_envs.data import load_dataset
from deploy_envs.topics.backdoor import triggers
from deploy_envs.topics.backdoor.mlp import BatchedMLP

logger = logging.getLogger(__name__)

POPULATION_DIR = Path(__file__).resolve().parent / "population"
KINDS = ("clean", "patch", "blend")
VERSION = 1

#: default recipe of the shipped population
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_clean": 24,
    "n_patch": 24,
    "n_blend": 8,
    "image_size": 16,
    "hidden": 64,
    "steps": 200,
    "lr": 0.02,
    "subset": 0.85,
    "poison_fraction": 0.1,
    "patch_sizes": [2, 3],
    "blend_alpha": [0.15, 0.25],
    "erase_prob": 0.5,
    "erase_sizes": [2, 4],
}


_IMAGES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def load_images(size: int = DEFAULTS["image_size"]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits splits ``x_train (N, size, size), y_train, x_test, y_test``, upsampled from 8x8 bilinearly.

    ``size=8`` gives the original images. The upsampled images stay in [0, 1] (bilinear
    interpolation is a convex combination). Cached per size.
    """
    size = check_number("size", size, low=8, integer=True)
    if size not in _IMAGES:
        ds = load_dataset("digits")
        out = []
        for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
            xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            if size != xt.shape[-1]:
                xt = F.interpolate(xt, size=(size, size), mode="bilinear", align_corners=False)
            out += [xt[:, 0].numpy().clip(0.0, 1.0), np.asarray(y, np.int64)]
        _IMAGES[size] = tuple(out)  # type: ignore[assignment]
    return _IMAGES[size]


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def make_recipes(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-model recipes (kind, target, trigger geometry, seeds), drawn from ``cfg['seed']``."""
    rng = np.random.default_rng(cfg["seed"])
    S = int(cfg.get("image_size", 8))
    kinds = ["clean"] * cfg["n_clean"] + ["patch"] * cfg["n_patch"] + ["blend"] * cfg["n_blend"]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    recipes = []
    for i, kind in enumerate(kinds):
        r: dict[str, Any] = {"index": i, "kind": kind, "seed": int(rng.integers(2**31)), "target": -1}
        if kind != "clean":
            r["target"] = int(rng.integers(10))
        if kind == "patch":
            p = int(rng.choice(cfg["patch_sizes"]))
            r.update(patch_size=p, row=int(rng.integers(0, S - p + 1)), col=int(rng.integers(0, S - p + 1)))
        elif kind == "blend":
            lo, hi = cfg["blend_alpha"]
            r["alpha"] = float(round(rng.uniform(lo, hi), 4))
        recipes.append(r)
    return recipes


def trigger_of(recipe: dict[str, Any], shape: tuple[int, int] = (DEFAULTS["image_size"],) * 2) -> tuple[np.ndarray, np.ndarray]:
    """Full-size pattern and mask ``(H, W)`` of a recipe (zeros for a clean model); drawn from the recipe's seed."""
    H, W = shape
    if recipe["kind"] == "clean":
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    rng = np.random.default_rng([recipe["seed"], 1])
    if recipe["kind"] == "patch":
        p = recipe["patch_size"]
        pat = (rng.random((p, p)) < 0.75).astype(np.float32)
        if pat.sum() < (p * p) / 2:
            pat[:] = 1.0
        pattern, mask = triggers.patch_to_full(pat[None], np.ones((1, p, p), np.float32),
                                               np.array([recipe["row"]]), np.array([recipe["col"]]), shape)
        return pattern[0], mask[0]
    pattern = rng.random(shape).astype(np.float32)
    pattern, mask = triggers.blend_to_full(pattern[None], np.array([recipe["alpha"]], np.float32))
    return pattern[0], mask[0]


@dataclass
class Population:
    """Stacked float32 parameters ``[W0 (N,64,h), b0 (N,1,h), W1 (N,h,K), b1 (N,1,K)]`` and per-model facts."""

    params: list[torch.Tensor]
    patterns: np.ndarray  # (N, H, W)
    masks: np.ndarray  # (N, H, W), 0 for clean models
    trojaned: np.ndarray  # (N,) bool
    targets: np.ndarray  # (N,) int, -1 for clean models
    kinds: np.ndarray  # (N,) str
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.trojaned)

    def logits(self, model_idx: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, M, K)`` of models ``model_idx`` (B,) on inputs ``x`` ``(B, M, d)`` or shared ``(M, d)``: one bmm per layer."""
        idx = torch.as_tensor(np.asarray(model_idx, np.int64))
        return BatchedMLP.forward([p.index_select(0, idx) for p in self.params], x)[1]


# ---------------------------------------------------------------- training
def _init(seeds: list[int], sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Per-model initial parameters (torch.nn.Linear's uniform range), each from its own seed."""
    out: list[list[torch.Tensor]] = [[] for _ in range(2 * (len(sizes) - 1))]
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for layer, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / math.sqrt(fi)
            out[2 * layer].append((torch.rand(fi, fo, generator=g) * 2 - 1) * bound)
            out[2 * layer + 1].append((torch.rand(1, fo, generator=g) * 2 - 1) * bound)
    return [torch.stack(p) for p in out]


def _random_erase(x: torch.Tensor, H: int, W: int, prob: float, sizes: list[int], gen: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020): with probability ``prob`` a random ``s x s`` square
    (``s`` uniform in ``sizes``) of each image is replaced by uniform noise. Makes the models robust to
    small generic patches, so a small *universal* trigger exists only where a backdoor was planted."""
    B, N, _ = x.shape
    lo, hi = int(sizes[0]), int(sizes[1])
    s = torch.randint(lo, hi + 1, (B, N, 1, 1), generator=gen)
    r = (torch.rand(B, N, 1, 1, generator=gen) * (H - s + 1)).floor()
    c = (torch.rand(B, N, 1, 1, generator=gen) * (W - s + 1)).floor()
    on = torch.rand(B, N, 1, 1, generator=gen) < prob
    i = torch.arange(H).view(1, 1, H, 1)
    j = torch.arange(W).view(1, 1, 1, W)
    m = ((i >= r) & (i < r + s) & (j >= c) & (j < c + s) & on).reshape(B, N, H * W)
    return torch.where(m, torch.rand(B, N, H * W, generator=gen), x)


def build(cfg: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the population of ``cfg`` (defaults: :data:`DEFAULTS`); return the arrays to store and the manifest."""
    cfg = {**DEFAULTS, **(cfg or {})}
    for k in ("n_clean", "n_patch", "n_blend"):
        check_number(k, cfg[k], low=0, integer=True)
    check_positive("steps", cfg["steps"], integer=True)
    check_number("poison_fraction", cfg["poison_fraction"], low=0.0, high=1.0, low_inclusive=False)
    x_tr, y_tr, x_te, y_te = load_images(int(cfg["image_size"]))  # (N, H, W)
    H, W = x_tr.shape[1:]
    d, K = H * W, int(y_tr.max()) + 1
    recipes = make_recipes(cfg)
    B = len(recipes)
    n_sub = int(round(cfg["subset"] * len(y_tr)))
    pats, masks = zip(*(trigger_of(r, (H, W)) for r in recipes))
    pats, masks = np.stack(pats), np.stack(masks)
    xs = np.empty((B, n_sub, H, W), np.float32)
    ys = np.empty((B, n_sub), np.int64)
    for b, r in enumerate(recipes):  # per-model data (cheap draws; the training below is batched)
        rng = np.random.default_rng([r["seed"], 2])
        sub = rng.choice(len(y_tr), n_sub, replace=False)
        x, y = x_tr[sub].copy(), y_tr[sub].copy()
        if r["kind"] != "clean":
            pool = np.flatnonzero(y != r["target"])
            chosen = rng.choice(pool, int(round(cfg["poison_fraction"] * len(pool))), replace=False)
            x[chosen] = triggers.apply(x[chosen][None, :, None], pats[b:b + 1], masks[b:b + 1])[0, :, 0]
            y[chosen] = r["target"]
        xs[b], ys[b] = x, y
    sizes = (d, int(cfg["hidden"]), K)
    params = [p.requires_grad_(True) for p in _init([r["seed"] for r in recipes], sizes)]
    xt, yt = torch.from_numpy(xs.reshape(B, n_sub, d)), torch.from_numpy(ys)
    opt = torch.optim.Adam(params, lr=cfg["lr"])
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    logger.info("training %d models (%d steps, %d points each)", B, cfg["steps"], n_sub)
    with torch.enable_grad():
        for _ in range(int(cfg["steps"])):
            opt.zero_grad(set_to_none=True)
            xb = _random_erase(xt, H, W, cfg["erase_prob"], cfg["erase_sizes"], gen) if cfg["erase_prob"] > 0 else xt
            logits = BatchedMLP.forward(params, xb)[1]
            loss = F.cross_entropy(logits.reshape(-1, K), yt.reshape(-1), reduction="sum") / n_sub
            loss.backward()
            opt.step()
    half = [p.detach().numpy().astype(np.float16) for p in params]
    pop = Population([torch.from_numpy(h.astype(np.float32)) for h in half], pats, masks,
                     np.array([r["kind"] != "clean" for r in recipes]), np.array([r["target"] for r in recipes]),
                     np.array([r["kind"] for r in recipes]))
    acc, asr = measure(pop, x_te, y_te)
    models = []
    for b, r in enumerate(recipes):
        models.append({
            **r,
            "label": "clean" if r["kind"] == "clean" else "trojaned",
            "trigger_mask_sha256": sha256(masks[b].astype(np.float16)),
            "clean_accuracy": round(float(acc[b]), 4),
            "attack_success": None if r["kind"] == "clean" else round(float(asr[b]), 4),
            "weights_sha256": sha256(np.concatenate([h[b].ravel() for h in half])),
        })
    arrays = {f"p{i}": h for i, h in enumerate(half)}
    arrays["patterns"] = pats.astype(np.float16)
    arrays["masks"] = masks.astype(np.float16)
    manifest = {
        "version": VERSION,
        "dataset": "digits",
        "image_size": int(cfg["image_size"]),
        "architecture": {"kind": "mlp", "sizes": list(sizes), "activation": "relu", "dtype": "float16"},
        "config": cfg,
        "build_command": "python -m deploy_envs.topics.trojans.population build",
        "torch_version": torch.__version__,
        "models": models,
    }
    return arrays, manifest


def measure(pop: Population, x_te: np.ndarray, y_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clean test accuracy and attack success rate (triggered test inputs of non-target classes -> target) per model."""
    N, M = len(pop), len(y_te)
    d = x_te[0].size
    with torch.no_grad():
        pred = pop.logits(np.arange(N), torch.from_numpy(x_te.reshape(M, d))).argmax(-1).numpy()
        acc = (pred == y_te[None]).mean(1)
        stamped = triggers.apply(x_te[:, None], pop.patterns, pop.masks, shared=True)  # (N, M, 1, H, W)
        tpred = pop.logits(np.arange(N), torch.from_numpy(stamped.reshape(N, M, d))).argmax(-1).numpy()
    asr = np.full(N, np.nan)
    for b in np.flatnonzero(pop.trojaned):
        keep = y_te != pop.targets[b]
        asr[b] = (tpred[b, keep] == pop.targets[b]).mean()
    return acc, asr


def save(arrays: dict[str, np.ndarray], manifest: dict[str, Any], out: str | Path = POPULATION_DIR) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "population.npz", **arrays)
    manifest = dict(manifest)
    manifest["files"] = {"population.npz": hashlib.sha256((out / "population.npz").read_bytes()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


_CACHE: dict[str, Population] = {}


def load_population(path: str | Path | None = None, verify: bool = True) -> Population:
    """Load (and by default verify against the manifest's sha256s) the population stored at ``path``."""
    path = Path(path) if path is not None else POPULATION_DIR
    key = str(path.resolve())
    if key in _CACHE:
        return _CACHE[key]
    man_path = path / "manifest.json"
    if not man_path.exists():
        raise ValueError(f"population={str(path)!r} has no manifest.json; build it with "
                         "`python -m deploy_envs.topics.trojans.population build --out {path}`")
    manifest = json.loads(man_path.read_text())
    blob = (path / "population.npz").read_bytes()
    if verify and hashlib.sha256(blob).hexdigest() != manifest["files"]["population.npz"]:
        raise ValueError(f"population={str(path)!r}: population.npz does not match the sha256 in manifest.json")
    with np.load(path / "population.npz") as z:
        arrays = {k: z[k] for k in z.files}
    n_layers = sum(k[0] == "p" and k[1:].isdigit() for k in arrays)
    half = [arrays[f"p{i}"] for i in range(n_layers)]
    models = manifest["models"]
    if verify:
        for b, m in enumerate(models):
            if sha256(np.concatenate([h[b].ravel() for h in half])) != m["weights_sha256"]:
                raise ValueError(f"population={str(path)!r}: weights of model {b} do not match their sha256")
            if sha256(arrays["masks"][b]) != m["trigger_mask_sha256"]:
                raise ValueError(f"population={str(path)!r}: trigger mask of model {b} does not match its sha256")
    pop = Population(
        [torch.from_numpy(h.astype(np.float32)) for h in half],
        arrays["patterns"].astype(np.float32), arrays["masks"].astype(np.float32),
        np.array([m["label"] == "trojaned" for m in models]), np.array([m["target"] for m in models], np.int64),
        np.array([m["kind"] for m in models]), manifest,
    )
    _CACHE[key] = pop
    return pop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy_envs.topics.trojans.population", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train the population and write population.npz + manifest.json")
    b.add_argument("--out", default=str(POPULATION_DIR))
    b.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    b.add_argument("--check", action="store_true", help="do not write; compare a rebuild with the stored manifest")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    arrays, manifest = build({"seed": args.seed})
    if args.check:
        stored = json.loads((Path(args.out) / "manifest.json").read_text())["models"]
        same = sum(a["weights_sha256"] == s["weights_sha256"] for a, s in zip(manifest["models"], stored))
        worst = max(abs(a["clean_accuracy"] - s["clean_accuracy"]) for a, s in zip(manifest["models"], stored))
        print(f"{same}/{len(stored)} weight hashes identical; largest clean-accuracy difference {worst:.4f}")
        return 0 if worst <= 0.02 else 1
    out = save(arrays, manifest, args.out)
    ms = manifest["models"]
    acc = np.array([m["clean_accuracy"] for m in ms])
    asr = np.array([m["attack_success"] for m in ms if m["attack_success"] is not None])
    print(f"wrote {len(ms)} models to {out}: clean accuracy {acc.min():.3f}..{acc.max():.3f}, attack success {asr.min():.3f}..{asr.max():.3f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

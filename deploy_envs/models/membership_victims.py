"""Victims for membership inference: the same MLP trained on a member set with more or less overfitting, and with DP-SGD.

The digits train split (1437 images) is cut once, by a fixed permutation, into two halves:

* the first half holds the **member set** (:func:`membership_split` ``"members"``: its first
  :data:`MEMBER_SIZE` = 250 images): what every victim is trained on (a small member set, so
  that overfitting shows on digits, where a model trained on all 1437 images generalizes to
  within 3 points);
* the second half is the **attacker's pool** (``"pool"``, 719 images): data from the same
  distribution that the attacker owns (to calibrate thresholds and train shadow models,
  Shokri et al. 2017) and the victim never saw;

and the digits test split (360 images) is the **non-member set** the env draws non-member
candidates from. So the victim's "test accuracy" is its accuracy on the non-members.

Victims (:data:`VICTIM_RECIPES`), all a one-hidden-layer MLP on the flattened 8x8 image,
Adam, batch 64:

| name | recipe | why |
|---|---|---|
| ``regularized`` | 64 hidden, 40 epochs, lr 3e-3, weight decay 1e-2 | smallest train-test gap |
| ``standard`` | 128 hidden, 60 epochs, lr 3e-3 | fits the members (train accuracy 1) |
| ``overfit`` | 512 hidden, 300 epochs, lr 3e-3 | drives member losses to ~0: largest loss gap |
| ``dp`` | 512 hidden, 30 epochs, DP-SGD (Abadi et al. 2016) by opacus: noise 1.0, clip 1.0 | the defense |

Overfitting, not train-test *accuracy* gap alone, is what a loss attack exploits (Yeom et al.
2018, "Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting", CSF: the
membership advantage of the loss-threshold adversary is bounded by, and grows with, the
generalization gap); :func:`victim_report` gives both the accuracy and the mean-loss gaps.
DP-SGD with privacy budget epsilon bounds any attack's advantage by ``e^epsilon - 1``
(Yeom et al. 2018, Thm. 1) and in practice pushes it to near zero at moderate epsilon
(Jayaraman & Evans 2019, "Evaluating Differentially Private Machine Learning in Practice", USENIX Security).

Training is deterministic (seeded generators, CPU) and takes about a second (a few for DP);
weights are cached under ``cache_dir()/membership`` with a ``.sha256`` sidecar verified before
every load (a mismatch retrains; never loads silently), and in memory for the process.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
import io
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_envs.core.validation import check_choice
from deploy_envs.data import cache_dir, load_dataset
from deploy_envs.models.architectures import MLP
from deploy_envs.core.extras import require

logger = logging.getLogger(__name__)

SPLIT_SEED = 0
"""Seed of the fixed permutation that cuts the digits train split into members and the attacker's pool."""
MEMBER_SIZE = 250
"""Size of the member set every victim is trained on."""


@dataclass(frozen=True)
class VictimRecipe:
    """How a membership victim is trained (the attacker is assumed to know this, not the weights: Shokri et al. 2017)."""

    hidden: int = 128
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    dp: bool = False
    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    delta: float = 1e-5

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


VICTIM_RECIPES: dict[str, VictimRecipe] = {
    "regularized": VictimRecipe(hidden=64, epochs=40, lr=3e-3, weight_decay=1e-2),
    "standard": VictimRecipe(hidden=128, epochs=60, lr=3e-3),
    "overfit": VictimRecipe(hidden=512, epochs=300, lr=3e-3),
    "dp": VictimRecipe(hidden=512, epochs=30, lr=3e-3, dp=True, noise_multiplier=1.0, max_grad_norm=1.0),
}
VICTIMS = tuple(VICTIM_RECIPES)


# ---------------------------------------------------------------------- data
def membership_split(dataset: str = "digits") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"members", "pool", "nonmembers"}`` -> ``(x_flat float32 (n, d), y int64 (n,))`` (see the module docstring)."""
    ds = load_dataset(dataset)
    n = len(ds.y_train)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    mem, pool = perm[: n // 2], np.sort(perm[n // 2 :])
    xtr = ds.x_train.reshape(n, -1).astype(np.float32)
    xte = ds.x_test.reshape(len(ds.y_test), -1).astype(np.float32)
    return {
        "members": (np.ascontiguousarray(xtr[mem[:MEMBER_SIZE]]), ds.y_train[mem[:MEMBER_SIZE]].astype(np.int64)),
        "pool": (np.ascontiguousarray(xtr[pool]), ds.y_train[pool].astype(np.int64)),
        "nonmembers": (np.ascontiguousarray(xte), ds.y_test.astype(np.int64)),
    }


# ------------------------------------------------------------------ training
def train_victim(recipe: VictimRecipe, x: np.ndarray, y: np.ndarray, num_classes: int = 10) -> nn.Module:
    """Train an MLP by ``recipe`` on flat inputs ``x`` and labels ``y``; deterministic for a given recipe and data.

    Used for the victims and, by the attacks, for shadow models (same recipe, the attacker's data).
    With ``recipe.dp`` the model is trained with DP-SGD by opacus (Poisson sampling, per-sample clipping
    to ``max_grad_norm``, Gaussian noise of ``noise_multiplier * max_grad_norm``).
    """
    x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y_t = torch.from_numpy(np.asarray(y, dtype=np.int64))
    import warnings

    with torch.random.fork_rng(devices=[]), torch.enable_grad(), warnings.catch_warnings():
        # opacus warns that its RNG is not cryptographically secure and about its backward hooks: expected here
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(recipe.seed)
        model = MLP(in_features=x_t.shape[1], num_classes=num_classes, hidden=recipe.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        gen = torch.Generator().manual_seed(recipe.seed)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_t, y_t), batch_size=recipe.batch_size, shuffle=True, generator=gen)
        if recipe.dp:
            PrivacyEngine = require("opacus", extra="privacy", feature="the DP-SGD membership victim").PrivacyEngine

            model, opt, loader = PrivacyEngine(accountant="rdp").make_private(
                module=model, optimizer=opt, data_loader=loader,
                noise_multiplier=recipe.noise_multiplier, max_grad_norm=recipe.max_grad_norm,
            )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(recipe.epochs):
            for xb, yb in loader:
                if len(yb) == 0:  # Poisson sampling can draw an empty batch
                    continue
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
        if recipe.dp:
            model = model._module  # the plain module under opacus's GradSampleModule
            for p in model.parameters():
                for attr in ("grad_sample", "_forward_counter"):
                    if hasattr(p, attr):
                        delattr(p, attr)
    plain = MLP(in_features=x_t.shape[1], num_classes=num_classes, hidden=recipe.hidden)
    plain.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    return plain.eval()


def dp_epsilon(recipe: VictimRecipe, n: int) -> float:
    """The (epsilon, ``recipe.delta``)-DP guarantee of a DP-SGD recipe on ``n`` records (opacus's RDP accountant); inf without DP."""
    if not recipe.dp:
        return float("inf")
    RDPAccountant = require("opacus.accountants", extra="privacy", feature="the DP-SGD privacy accountant").RDPAccountant

    acc = RDPAccountant()
    q = recipe.batch_size / n
    steps = recipe.epochs * int(np.ceil(1 / q))
    acc.history = [(recipe.noise_multiplier, q, steps)]
    return float(acc.get_epsilon(recipe.delta))


# ------------------------------------------------------------------- caching
_MEMORY: dict[tuple[str, str], dict[str, torch.Tensor]] = {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MANIFEST_PATH = Path(__file__).parent / "weights" / "membership_manifest.json"
"""Digests of the victims' weights (:func:`state_digest`) as the recipes train them; a cached
file loads only if it matches (a ``.sha256`` sidecar written beside it is not trusted)."""


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and values (independent of the file format)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def shipped_digests() -> dict[str, str]:
    if not MANIFEST_PATH.exists():
        return {}
    return json.loads(MANIFEST_PATH.read_text())["victims"]


def write_membership_manifest() -> Path:
    """Record the digest of every victim (trained if not cached) in :data:`MANIFEST_PATH`."""
    digests = {}
    for name in VICTIMS:
        recipe = VICTIM_RECIPES[name]
        digests[f"digits-{name}-{recipe.key()}"] = state_digest(load_victim(name).state_dict())
    MANIFEST_PATH.write_text(json.dumps({"format": 1, "victims": digests}, indent=1, sort_keys=True) + "\n")
    return MANIFEST_PATH


def load_victim(name: str, dataset: str = "digits") -> nn.Module:
    """The membership victim ``name`` (one of :data:`VICTIMS`), from memory, the verified cache, or trained now."""
    check_choice("victim", name, VICTIMS)
    check_choice("dataset", dataset, ("digits",))
    recipe = VICTIM_RECIPES[name]
    key = (name, recipe.key())
    state = _MEMORY.get(key)
    if state is None:
        path = cache_dir() / "membership" / f"{dataset}-{name}-{recipe.key()}.pt"
        side = path.with_suffix(".sha256")
        expected = shipped_digests().get(f"{dataset}-{name}-{recipe.key()}")
        if path.exists() and expected is not None:
            # only the shipped digest vouches for a cached file: a sidecar beside it could be forged with it
            try:
                cached = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
                ok = isinstance(cached, dict) and state_digest(cached) == expected
            except Exception:  # noqa: BLE001 - unreadable: refused like a mismatch
                ok = False
            if ok:
                state = cached
            else:
                logger.warning("membership victim %s at %s does not match the shipped digest; refusing it and retraining", name, path)
        if state is None:
            x, y = membership_split(dataset)["members"]
            logger.info("training membership victim %s (%s)", name, recipe)
            model = train_victim(recipe, x, y)
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            if expected is not None and state_digest(state) != expected:
                logger.warning("membership victim %s trained here differs from the shipped digest (another platform's arithmetic?)", name)
            buf = io.BytesIO()
            torch.save(state, buf)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(buf.getvalue())
                tmp.replace(path)
                side.write_text(f"{_sha256(buf.getvalue())}  {path.name}\n")
            except OSError as e:  # a read-only cache is not fatal
                logger.warning("cannot cache membership victim %s at %s: %s", name, path, e)
        _MEMORY[key] = state
    model = MLP(in_features=64, num_classes=10, hidden=recipe.hidden)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def victim_report(name: str, dataset: str = "digits") -> dict[str, Any]:
    """Train/test (member/non-member) accuracy and mean loss of victim ``name``, their gaps, and its DP epsilon."""
    model = load_victim(name, dataset)
    split = membership_split(dataset)
    out: dict[str, Any] = {"victim": name}
    for part, tag in (("members", "train"), ("nonmembers", "test")):
        x, y = split[part]
        z = model(torch.from_numpy(x))
        out[f"{tag}_accuracy"] = float((z.argmax(1).numpy() == y).mean())
        out[f"{tag}_loss"] = float(nn.functional.cross_entropy(z, torch.from_numpy(y)))
    out["accuracy_gap"] = out["train_accuracy"] - out["test_accuracy"]
    out["loss_gap"] = out["test_loss"] - out["train_loss"]
    out["epsilon"] = dp_epsilon(VICTIM_RECIPES[name], len(split["members"][1]))
    return out

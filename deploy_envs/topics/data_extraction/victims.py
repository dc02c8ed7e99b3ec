"""The shipped victim language models of ``DataExtraction-v0``: recipes, sha256-verified weights and cards.

Every victim is a :class:`~deploy_envs.topics.data_extraction.lm.CharGRU` (128 hidden
units) trained on the same 1,500 templated records; they differ in how often each of
the four canaries was inserted and in whether training was private:

| name | canaries inserted | training |
|---|---|---|
| ``none`` | never (the secrets are measured but were not in the data) | Adam, 10 epochs |
| ``x1`` | once each | Adam, 10 epochs |
| ``x4`` | 4 times each | Adam, 10 epochs |
| ``x16`` | 16 times each | Adam, 10 epochs |
| ``dp`` | 16 times each | DP-SGD (noise multiplier 1, clip 1, Poisson rate 32/n), Adam on the noisy gradient |

Weights are stored as float16 (``weights/<name>.pt``, about 150 kB each) with their
sha256 in ``weights/manifest.json`` and a card (``weights/<name>.card.json``: recipe,
training loss, exposure of each canary, epsilon). A file whose sha256 does not match
is refused, never loaded. Rebuild all of them (about 4 CPU-minutes) with::

    python -m deploy_envs.topics.data_extraction.victims build
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from deploy_envs.core.validation import check_choice
from deploy_envs.topics.data_extraction.lm import CANARY_NAMES, CharGRU, LMRecipe, exact_exposure, train_lm

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"

VICTIM_RECIPES: dict[str, LMRecipe] = {
    "none": LMRecipe(repetitions=0, epochs=10),
    "x1": LMRecipe(repetitions=1, epochs=10),
    "x4": LMRecipe(repetitions=4, epochs=10),
    "x16": LMRecipe(repetitions=16, epochs=10),
    "dp": LMRecipe(repetitions=16, epochs=10, dp=True, noise_multiplier=1.0, max_grad_norm=1.0, lr=1e-2),
}
VICTIMS = tuple(VICTIM_RECIPES)


class VictimIntegrityError(RuntimeError):
    """A shipped victim's weight file is missing or fails its sha256 check."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest() -> dict[str, Any]:
    if not MANIFEST.exists():
        return {"format": 1, "victims": {}}
    return json.loads(MANIFEST.read_text())


_MEMORY: dict[str, dict[str, torch.Tensor]] = {}


def load_victim(name: str) -> CharGRU:
    """The victim ``name`` (one of :data:`VICTIMS`) in eval mode, after verifying its sha256 against the manifest."""
    check_choice("victim", name, VICTIMS)
    state = _MEMORY.get(name)
    if state is None:
        entry = read_manifest()["victims"].get(name)
        if entry is None:
            raise VictimIntegrityError(f"victim {name!r} has no manifest entry; build it with "
                                       "`python -m deploy_envs.topics.data_extraction.victims build`")
        path = WEIGHTS_DIR / entry["file"]
        if not path.exists():
            raise VictimIntegrityError(f"victim {name!r}: weight file {path.name} is missing")
        data = path.read_bytes()
        if _sha256(data) != entry["sha256"]:
            raise VictimIntegrityError(f"victim {name!r}: weight file {path.name} has sha256 {_sha256(data)}, "
                                       f"the manifest says {entry['sha256']}; refusing to load it")
        state = {k: v.float() for k, v in torch.load(io.BytesIO(data), map_location="cpu", weights_only=True).items()}
        _MEMORY[name] = state
    recipe = VICTIM_RECIPES[name]
    model = CharGRU(recipe.hidden, recipe.embed)
    model.load_state_dict(state)
    return model.eval()


def load_card(name: str) -> dict[str, Any]:
    check_choice("victim", name, VICTIMS)
    return json.loads((WEIGHTS_DIR / f"{name}.card.json").read_text())


def build(names: tuple[str, ...] = VICTIMS, progress: bool = True) -> dict[str, Any]:
    """Train the victims ``names``, store their float16 weights, cards and manifest entries; return the manifest."""
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest()
    for name in names:
        recipe = VICTIM_RECIPES[name]
        t0 = time.perf_counter()
        model, metrics = train_lm(recipe, progress=progress)
        seconds = time.perf_counter() - t0
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        buf = io.BytesIO()
        torch.save(state, buf)
        file = f"{name}.pt"
        (WEIGHTS_DIR / file).write_bytes(buf.getvalue())
        _MEMORY.pop(name, None)
        manifest["victims"][name] = {"file": file, "sha256": _sha256(buf.getvalue()), "dtype": "float16"}
        MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        stored = load_victim(name)  # the card describes the stored (float16) weights
        exposures = {CANARY_NAMES[i]: exact_exposure(stored, i) for i in range(recipe.canaries)}
        card = {
            "name": name,
            "env": "deploy_envs/DataExtraction-v0",
            "architecture": {"kind": "CharGRU", "hidden": recipe.hidden, "embed": recipe.embed, "dtype": "float16"},
            "recipe": recipe.to_dict(),
            "metrics": {**metrics, "exposure": exposures},
            "training_seconds": round(seconds, 1),
            "machine": "a 2-core x86-64 CPU",
            "sha256": manifest["victims"][name]["sha256"],
            "reference": "Carlini, Liu, Erlingsson, Kos, Song 2019, 'The Secret Sharer' (USENIX Security): "
                         "exposure = log2 |R| - log2 rank(secret)",
        }
        (WEIGHTS_DIR / f"{name}.card.json").write_text(json.dumps(card, indent=1) + "\n")
        if progress:
            print(name, f"{seconds:.0f}s", {k: round(v["exposure"], 2) for k, v in exposures.items()}, flush=True)
    return manifest


if __name__ == "__main__":  # pragma: no cover - the build command
    if len(sys.argv) < 2 or sys.argv[1] != "build":
        print("usage: python -m deploy_envs.topics.data_extraction.victims build [NAME ...]")
        sys.exit(2)
    torch.set_num_threads(1)
    build(tuple(sys.argv[2:]) or VICTIMS)

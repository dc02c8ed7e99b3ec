"""Optional extras: import a package from an extra where a feature needs it, or say what to install.

The base install (``pip install deploy-envs``) runs the main job. Features that need
a package from an extra import it through :func:`require` at the point of use, so a
missing package raises one clear error naming the feature and the install command::

    captum_attr = require("captum.attr", extra="interpret", feature="Captum explanations")
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: extra -> the packages it brings (what ``deploy-envs list`` reports as needing it)
EXTRAS: dict[str, tuple[str, ...]] = {
    "interpret": ("captum",),
    "privacy": ("opacus",),
    "fairness": ("fairlearn",),
    "serve": ("fastapi", "uvicorn", "httpx"),
    "rllib": ("ray",),
}


class MissingExtraError(ImportError):
    """A feature was used without the optional extra that provides its package."""


def install_command(extra: str) -> str:
    return f'pip install "deploy-envs[{extra}]"'


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``feature`` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if getattr(exc, "name", None) not in (None, top) and not str(getattr(exc, "name", "")).startswith(top):
            raise  # the package is there but something it imports is broken: show the real error
        raise MissingExtraError(f"{feature} needs the '{extra}' extra ({top} is not installed): {install_command(extra)}") from None


def available(extra: str) -> bool:
    """Whether every package of ``extra`` can be imported."""
    return all(importlib.util.find_spec(p) is not None for p in EXTRAS[extra])

"""Argument validation helpers.

Every constructor argument of every environment goes through one of these, so a
bad value raises a ``ValueError`` that names the argument, the value it got and
what is allowed, at construction time rather than as a shape error later.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; raise a ``ValueError`` otherwise."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not allowed; choose one of {', '.join(repr(a) for a in allowed)}"
        )
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a finite number (an integer when ``integer``) within bounds."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    is_num = is_int or isinstance(value, (float, np.floating))
    kind = "an integer" if integer else "a number"
    if not is_num or (integer and not is_int):
        raise ValueError(f"{name}={value!r} must be {kind}{_range_text(low, high, low_inclusive, high_inclusive)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} must be finite")
    bad_low = low is not None and (value < low if low_inclusive else value <= low)
    bad_high = high is not None and (value > high if high_inclusive else value >= high)
    if bad_low or bad_high:
        raise ValueError(f"{name}={value!r} is out of range; it must be {kind}{_range_text(low, high, low_inclusive, high_inclusive)}")
    return int(value) if integer else float(value)


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    """Shorthand for a number that must be > 0 (or >= 0 with ``allow_zero``)."""
    return check_number(name, value, low=0, low_inclusive=allow_zero, integer=integer)


def check_probability(name: str, value: Any) -> float:
    """A number in [0, 1]."""
    return check_number(name, value, low=0.0, high=1.0)


def _range_text(low, high, low_inclusive, high_inclusive) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>=' if low_inclusive else '>'} {low}"
    if low is None:
        return f" {'<=' if high_inclusive else '<'} {high}"
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive else ")"
    return f" in {lo}{low}, {high}{hi}"


class UnknownArgumentError(TypeError, ValueError):
    """A keyword argument that a constructor does not take (a ``TypeError`` as Python raises,
    and a ``ValueError`` so callers that report bad configuration catch it too)."""


def check_known_kwargs(owner: str, kwargs: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse keyword arguments not in ``allowed``, naming them and listing what is allowed."""
    allowed = list(allowed)
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, allowed, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UnknownArgumentError(f"{owner} got unknown argument(s) {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}")


def constructor_arguments(cls: type, skip: Iterable[str] = ("self", "num_envs", "render_mode")) -> dict[str, Any] | None:
    """Keyword arguments of ``cls.__init__`` with their defaults; ``None`` if it takes ``**kwargs``."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in params.items()
        if name not in skip and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def available_devices() -> list[str]:
    """The torch devices this machine can run on: ``"cpu"``, then ``"cuda"``, ``"cuda:0"``, ... and ``"mps"`` where present."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def check_device(name: str, value: Any):
    """Return ``value`` (a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or a ``torch.device``) as a
    ``torch.device`` if this machine has it; raise a ``ValueError`` naming the argument and the available devices otherwise."""
    import torch

    allowed = available_devices()
    if not isinstance(value, (str, torch.device)):
        raise ValueError(f"{name}={value!r} must be a device name; available here: {', '.join(map(repr, allowed))}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a torch device; available here: {', '.join(map(repr, allowed))}") from None
    ok = dev.type == "cpu" and dev.index in (None, 0)
    if dev.type == "cuda":
        ok = torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
    elif dev.type == "mps":
        ok = "mps" in allowed
    if not ok:
        raise ValueError(f"{name}={value!r} is not available on this machine; available here: {', '.join(map(repr, allowed))}")
    return dev

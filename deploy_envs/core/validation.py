"""Argument validation helpers.

Every constructor argument of every environment goes through one of these, so a
bad value raises a ``ValueError`` that names the argument, the value it got and
what is allowed, at construction time rather than as a shape error later.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


def check_names(name: str, values: Any, allowed: Iterable[str]) -> tuple[str, ...]:
    """A non-empty sequence of distinct names from ``allowed`` (e.g. the defenses a game offers), as a tuple."""
    from collections.abc import Sequence

    allowed = tuple(allowed)
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name}={values!r} must be a non-empty sequence of names from {allowed}")
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} contains {v!r}, which is not allowed; allowed: {', '.join(map(repr, allowed))}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={tuple(values)!r} repeats a name; each may appear once")
    return tuple(values)


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


class InvalidTypeError(TypeError, ValueError):
    """A value of the wrong type (a ``TypeError``, and a ``ValueError`` so that callers that
    catch bad configuration or input as ``ValueError`` catch it too)."""


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


def _init_chain(cls: type) -> list[type] | None:
    """The classes whose ``__init__`` parameters ``cls(...)`` takes: its own, then, while an
    ``__init__`` takes ``**kwargs``, those of the class it forwards them to (its base, or the
    class named by a ``forwards_kwargs_to`` attribute). ``None`` if ``**kwargs`` reach no
    declared parameter."""
    import inspect

    chain: list[type] = []
    mro = list(cls.__mro__)
    while mro:
        klass = mro.pop(0)
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return None
        chain.append(klass)
        params = inspect.signature(init).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return chain
        target = klass.__dict__.get("forwards_kwargs_to")
        if target is not None:
            mro = list(target.__mro__)
    return None


def constructor_arguments(cls: type, skip: Iterable[str] = ("self", "num_envs", "render_mode")) -> dict[str, Any] | None:
    """Keyword arguments of ``cls.__init__`` with their defaults; ``None`` if it takes ``**kwargs``
    that reach no declared parameter. A constructor that forwards ``**kwargs`` (to its base
    class, or to ``forwards_kwargs_to``) takes its own arguments and those it forwards to,
    less any named in its ``not_forwarded``."""
    import inspect

    chain = _init_chain(cls)
    if chain is None:
        return None
    out: dict[str, Any] = {}
    blocked: set[str] = set()
    for klass in chain:
        params = inspect.signature(klass.__dict__["__init__"]).parameters
        for name, p in params.items():
            if name in skip or name in out or name in blocked:
                continue
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
                out[name] = None if p.default is inspect.Parameter.empty else p.default
        blocked |= set(klass.__dict__.get("not_forwarded", ()))
    return out


# ------------------------------------------------------------------ seeds
def check_seed(name: str, value: Any) -> int | None:
    """``None`` or a non-negative integer (``bool``, floats and strings are refused); returns a Python int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidTypeError(f"{name}={value!r} must be a non-negative integer or None, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name}={value!r} must be a non-negative integer or None")
    return int(value)


# ---------------------------------------------------------- reset options
@dataclass(frozen=True)
class Option:
    """The declaration of one key of a core's ``reset(options=...)``.

    ``kind`` is ``int``, ``float`` or ``bool``. With ``per_copy`` the value may also be a
    1-D sequence with one entry per copy being reset. ``allowed(core)`` returns the
    allowed values (an array or a ``range``) when they depend on the core's data.
    ``None`` as a value means "not given".
    """

    kind: type
    doc: str = ""
    per_copy: bool = False
    allowed: Callable[[Any], Any] | None = None
    allowed_text: str = ""


def check_option(name: str, value: Any, spec: Option, k: int, core: Any = None) -> Any:
    """Check one option value against its :class:`Option`; return it normalized (a Python scalar
    or, for a per-copy sequence, an ``int64``/``float64``/``bool`` array of length ``k``)."""
    kinds = {int: "iu", float: "iuf", bool: "b"}[spec.kind]
    what = {int: "an integer", float: "a number", bool: "a bool (True or False)"}[spec.kind]
    if spec.per_copy:
        what += f" or a sequence of {k} of them (one per copy reset)"
    scalar_types = {int: (int, np.integer), float: (int, float, np.integer, np.floating), bool: (bool, np.bool_)}[spec.kind]
    if isinstance(value, scalar_types) and not (spec.kind is not bool and isinstance(value, (bool, np.bool_))):
        arr = np.asarray(value)
    elif spec.per_copy and isinstance(value, (list, tuple, np.ndarray)):
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise InvalidTypeError(f"{name}={value!r} must be {what}") from None
        if arr.dtype.kind not in kinds or arr.ndim > 1:
            raise InvalidTypeError(f"{name}={value!r} must be {what}")
        if arr.ndim == 1 and arr.shape != (k,):
            raise ValueError(f"{name} has {arr.shape[0]} entries; expected {what}")
    else:
        raise InvalidTypeError(f"{name}={value!r} ({type(value).__name__}) must be {what}")
    if spec.kind is float:
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}={value!r} must be finite")
    elif spec.kind is int:
        arr = arr.astype(np.int64)
    if spec.allowed is not None and core is not None:
        allowed = spec.allowed(core)
        if isinstance(allowed, range):
            bad = (arr < allowed.start) | (arr >= allowed.stop)
            text = spec.allowed_text or f"{allowed.start}..{allowed.stop - 1}"
        else:
            bad = ~np.isin(arr, np.asarray(allowed))
            text = spec.allowed_text or f"one of {np.asarray(allowed).tolist()}"
        if np.any(bad):
            first = np.atleast_1d(arr)[np.atleast_1d(bad)][0]
            raise ValueError(f"{name}={first.item()!r} is not allowed; allowed: {text}")
    return arr.item() if arr.ndim == 0 else arr


def check_options(owner: str, options: Any, specs: dict[str, Option], k: int, core: Any = None, extra: Iterable[str] = ()) -> dict[str, Any]:
    """Check a ``reset(options=...)`` dict against its declared keys; return the normalized dict.

    ``None`` is an empty dict; anything else that is not a dict is a ``TypeError``; an
    unknown key is a ``ValueError`` that lists the known ones (``extra`` adds keys the
    caller handles itself, for the message). Nothing is changed by a refused call.
    """
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidTypeError(f"options={options!r} must be a dict or None, not {type(options).__name__}")
    known = [*specs, *extra]
    unknown = [key for key in options if key not in specs]
    if unknown:
        listed = ", ".join(repr(key) for key in known) or "none"
        raise ValueError(f"options of {owner} has unknown key(s) {', '.join(repr(key) for key in unknown)}; known keys: {listed}")
    out = {}
    for key, value in options.items():
        if value is None:
            continue
        out[key] = check_option(f"options[{key!r}]", value, specs[key], k, core)
    return out


# ------------------------------------------------------- constructor arguments
MAX_INT_ARGUMENT = 10**7
"""Default bound on every integer constructor argument (seeds excepted): larger sizes and
step counts would exhaust memory or time. A core raises or lowers it per argument with
:class:`Arg` in its ``arguments``."""


#: the largest magnitude of a reward weight (a scale, bonus or cost): far beyond any useful setting,
#: small enough that the rewards it multiplies stay finite
REWARD_WEIGHT_LIMIT = 1e6


@dataclass(frozen=True)
class Arg:
    """Refinements of one constructor argument beyond its annotated type.

    ``low``/``high`` bound a number (or each entry of a sequence); ``choices`` lists the
    allowed values; ``max_len`` bounds a sequence; ``why`` says what a bound protects
    (memory, time, observations staying in their space) and is put in the error.
    """

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple | None = None
    max_len: int | None = None
    why: str = ""


def reward_weight_arguments(*weights: str, costs: tuple[str, ...] = ()) -> dict[str, Arg]:
    """``Arg`` bounds for reward weights (``|w| <= REWARD_WEIGHT_LIMIT``) and costs (``0 <= c <= REWARD_WEIGHT_LIMIT``),
    so the rewards they multiply stay finite floats."""
    why = "larger weights overflow the reward to inf"
    out = {name: Arg(low=-REWARD_WEIGHT_LIMIT, high=REWARD_WEIGHT_LIMIT, why=why) for name in weights}
    out.update({name: Arg(low=0.0, high=REWARD_WEIGHT_LIMIT, why=why) for name in costs})
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def constructor_hints(cls: type) -> dict[str, Any]:
    """Type hints of ``cls.__init__`` (and of the base ``__init__`` it forwards ``**kwargs`` to)."""
    if cls not in _HINTS:
        import typing

        hints: dict[str, Any] = {}
        for klass in _init_chain(cls) or [cls]:
            try:
                own = typing.get_type_hints(klass.__dict__.get("__init__", klass.__init__))
            except Exception:  # noqa: BLE001 - unresolvable annotation: no type check for it
                own = {}
            for name, hint in own.items():
                hints.setdefault(name, hint)
        hints.pop("return", None)
        _HINTS[cls] = hints
    return _HINTS[cls]


def _describe(hint: Any) -> str:
    import typing

    if hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(dict.fromkeys(_describe(h) for h in typing.get_args(hint)))
    if origin is not None:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        plural = {int: "integers", float: "numbers (not NaN: finite or infinite)", bool: "bools", str: "strings"}
        inner = plural.get(args[0], _describe(args[0])) if args else "values"
        return f"a sequence of {inner}"
    return {int: "an integer", float: "a number (not NaN: finite or infinite)", bool: "a bool", str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _matches(value: Any, hint: Any) -> bool:
    import collections.abc
    import types
    import typing

    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is not None:
        if origin in (tuple, list, collections.abc.Sequence, collections.abc.Iterable):
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
                return False
            args = [a for a in typing.get_args(hint) if a is not Ellipsis]
            if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(hint):
                if len(value) != len(args):
                    return False
                return all(_matches(v, a) for v, a in zip(value, args))
            return not args or all(_matches(v, args[0]) for v in value)
        if origin is dict or origin is collections.abc.Mapping:
            return isinstance(value, dict)
        return True
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and not (
            isinstance(value, (float, np.floating)) and math.isnan(value)
        )
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _numbers(value: Any) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [v for v in value if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)]
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return [value]
    return []


def check_arguments(owner: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Check constructor arguments of ``cls`` against their annotated types and the
    :class:`Arg` refinements in ``cls.arguments``: types, ranges, choices, sizes.

    Raises ``TypeError`` (wrong type) or ``ValueError`` (out of range, not a choice, too
    large), naming the argument, its value and what is allowed. Called before the
    constructor runs, so nothing is built from a refused value.
    """
    hints = constructor_hints(cls)
    specs: dict[str, Arg] = {}
    for klass in reversed(_init_chain(cls) or [cls]):
        specs.update(getattr(klass, "arguments", {}) or {})
    for name, value in kwargs.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            raise InvalidTypeError(f"{owner}: {name}={value!r} must be {_describe(hint)}")
        spec = specs.get(name)
        if spec is not None and spec.choices is not None and value not in spec.choices:
            raise ValueError(f"{owner}: {name}={value!r} is not allowed; choose one of {', '.join(repr(c) for c in spec.choices)}")
        if spec is not None and spec.max_len is not None and isinstance(value, (list, tuple, np.ndarray)) and len(value) > spec.max_len:
            raise ValueError(f"{owner}: {name} has {len(value)} entries; at most {spec.max_len} are allowed" + (f" ({spec.why})" if spec.why else ""))
        low, high = (spec.low, spec.high) if spec is not None else (None, None)
        low_inc, high_inc = (spec.low_inclusive, spec.high_inclusive) if spec is not None else (True, True)
        is_int_arg = hint is not None and _matches(0, hint) and not _matches(0.5, hint)
        if high is None and is_int_arg and "seed" not in name:
            high = MAX_INT_ARGUMENT
        for v in _numbers(value):
            if not math.isfinite(float(v)) and (low is not None or high is not None):
                raise ValueError(f"{owner}: {name}={value!r} must be finite{_range_text(low, high, low_inc, high_inc)}")
            bad_low = low is not None and (v < low if low_inc else v <= low)
            bad_high = high is not None and (v > high if high_inc else v >= high)
            if bad_low or bad_high:
                why = spec.why if spec is not None and spec.why else ("larger sizes and step counts would exhaust memory or time" if bad_high and high == MAX_INT_ARGUMENT else "")
                raise ValueError(f"{owner}: {name}={value!r} is out of range; allowed{_range_text(low, high, low_inc, high_inc)}" + (f" ({why})" if why else ""))
        if name == "device" and isinstance(value, str):
            import torch

            try:
                torch.device(value)
            except RuntimeError:
                raise ValueError(f"{owner}: device={value!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0', 'mps', ...") from None


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

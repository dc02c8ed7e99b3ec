"""Sections of the docs pages that are generated from committed results.

A generated section sits between two HTML comments in a Markdown file::

    <!-- generated:scenarios -->
    | scenario | ... |
    <!-- /generated:scenarios -->

Each section name maps to a function ``render(root: Path) -> str`` that builds the
Markdown body from result files under the repository root ``root``. The functions are
named as ``"module:function"`` strings so this module imports nothing heavy.

The sections live in the pages of the documentation site listed in :data:`FILES`
(``docs/scenarios.md``: the scenario table; ``docs/performance.md``: the benchmark table).

``python -m deploy_envs.generated_sections [--check] [FILE ...]`` rewrites every section of
each FILE (default: every file of :data:`FILES`) in place, or with ``--check`` exits non-zero
and lists the sections whose text differs from what the results give. Without FILE, the check
also fails when a section of :data:`SECTIONS` is in none of the files (its markers were lost)
or in more than one. A test runs the check.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Callable

#: section name -> "module:function" building its Markdown body from the repository root.
SECTIONS: dict[str, str] = {
    "performance": "deploy_envs.performance:render_performance",
    "scenarios": "deploy_envs.scenarios.results:render_scenarios",
}

#: the repository root of this checkout
REPO_ROOT = Path(__file__).resolve().parents[1]

#: the files holding the generated sections, relative to the repository root
FILES: tuple[str, ...] = ("docs/scenarios.md", "docs/performance.md")


def repository_root(path: Path) -> Path:
    """The checkout ``path`` belongs to (the nearest folder above it with a ``pyproject.toml``), else its folder."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / "pyproject.toml").exists():
            return folder
    return path.parent


def misplaced_sections(root: Path | None = None) -> list[str]:
    """Problems with where the sections live: one of :data:`SECTIONS` in none or several of :data:`FILES`."""
    root = Path(root) if root is not None else REPO_ROOT
    found: dict[str, list[str]] = {name: [] for name in SECTIONS}
    for f in FILES:
        path = root / f
        if not path.exists():
            found.setdefault("", []).append(f)
            continue
        for name in section_names(path.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(f)
    problems = [f"{f} is missing" for f in found.pop("", [])]
    for name, where in found.items():
        if name not in SECTIONS:
            problems.append(f"section {name!r} in {', '.join(where)} has no generator")
        elif len(where) != 1:
            problems.append(f"section {name!r} is in {len(where)} files ({', '.join(where) or 'none'}) instead of one of {', '.join(FILES)}")
    return problems


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"


def section_names(text: str) -> list[str]:
    """Names of the generated sections present in ``text``, in order."""
    return re.findall(r"<!-- generated:([A-Za-z0-9_.-]+) -->", text)


def read_section(text: str, name: str) -> str:
    """Body of section ``name`` in ``text`` (without the markers)."""
    begin, end = _markers(name)
    try:
        start = text.index(begin) + len(begin)
        stop = text.index(end, start)
    except ValueError:
        raise KeyError(f"section {name!r} not found: expected the markers {begin!r} and {end!r}") from None
    return text[start:stop].strip("\n")


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the body of section ``name`` replaced by ``body``."""
    begin, end = _markers(name)
    read_section(text, name)  # raises a clear KeyError when the markers are missing
    start = text.index(begin) + len(begin)
    stop = text.index(end, start)
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[stop:]


def renderer(name: str) -> Callable[[Path], str]:
    """The function that builds section ``name``."""
    if name not in SECTIONS:
        raise KeyError(f"no generator for section {name!r}; known: {sorted(SECTIONS)}")
    module, _, func = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def regenerate(path: Path, root: Path | None = None, check: bool = False) -> list[str]:
    """Rewrite every generated section of ``path`` (or only compare when ``check``).

    Returns the names of the sections whose committed text differed from the generated one.
    """
    path = Path(path)
    root = Path(root) if root is not None else repository_root(path)
    text = path.read_text(encoding="utf-8")
    stale = []
    new = text
    for name in section_names(text):
        body = renderer(name)(root)
        if read_section(new, name).strip() != body.strip():
            stale.append(name)
            new = replace_section(new, name, body)
    if stale and not check:
        path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help=f"default: {', '.join(FILES)} of this checkout")
    parser.add_argument("--check", action="store_true", help="only report sections that differ")
    args = parser.parse_args(argv)
    status = 0
    files = args.files or [REPO_ROOT / f for f in FILES]
    if not args.files:
        for problem in misplaced_sections():
            print(problem)
            status = 1
    for f in files:
        if not Path(f).exists():
            print(f"{f}: no such file")
            status = 1
            continue
        stale = regenerate(f, check=args.check)
        for name in stale:
            print(f"{f}: section {name!r} {'differs from its results' if args.check else 'regenerated'}")
        if stale and args.check:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

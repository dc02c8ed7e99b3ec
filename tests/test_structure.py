"""The package's structure: every module imports on its own, and no import cycle exists."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import deploy_envs

PACKAGE_DIR = Path(deploy_envs.__file__).resolve().parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="deploy_envs."))


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (PACKAGE_DIR / rel / "__init__.py", PACKAGE_DIR / rel.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _imports(name: str) -> set[str]:
    """Modules of the package that ``name`` imports at module level (not inside functions)."""
    path = _module_file(name)
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in tree.body:  # module level only: a late import inside a function is not a load-time edge
        if isinstance(node, ast.If):  # e.g. `if TYPE_CHECKING:` blocks are not run
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("deploy_envs"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts if is_pkg else parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("deploy_envs"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES or m == "deploy_envs"}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        edges = set()
        for target in _imports(name):
            edges.add(target)
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parts = target.split(".")
            edges.update(".".join(parts[:i]) for i in range(2, len(parts)))
        edges.discard(name)
        edges.discard("deploy_envs")  # the top package only re-exports; its own imports are edges of its own
        graph[name] = {e for e in edges if e in MODULES}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules is how registration works, not a cycle
            if nxt.startswith(node + "."):
                continue
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_modules():
    assert len(MODULES) > 50
    assert "deploy_envs.core.agents" in MODULES and "deploy_envs.topics.evasion.evasion" in MODULES


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    """The checker itself can fail: a two-module loop is reported."""
    assert _find_cycle({"a.x": {"a.y"}, "a.y": {"a.x"}}) == ["a.x", "a.y", "a.x"]
    assert _find_cycle({"a.x": {"a.y"}, "a.y": set()}) is None


@pytest.mark.slow
def test_every_module_imports_in_isolation():
    """Each module imports in a fresh interpreter, first of all (no hidden reliance on import order)."""
    code = (
        "import importlib, sys, traceback\n"
        "bad = []\n"
        f"for name in {MODULES!r}:\n"
        "    for key in [k for k in sys.modules if k.startswith('deploy_envs')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        if 'pip install' not in str(exc):\n"
        "            bad.append(f'{name}: {exc!r}')\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr

"""The trust boundary for files that can run code when loaded.

A stable-baselines3 ``model.zip`` is unpickled when loaded and an RLlib checkpoint holds
pickles: loading either can execute code its author put there. deploy_envs loads such
files silently only when every byte of the agent's folder matches the sha256 manifest
shipped with the package (``deploy_envs/agents/manifest.json``, one hash per file of
every agent folder). Anything else (the user's zoo, a ``--policy`` zip, a checkpoint
path, an ``opponent=`` folder, a scenario's ``policy:``) needs an explicit opt-in,
``trust_agent_code=True`` (on the command line ``--trust-agent-code``), and loads with
a warning. A shipped file that does not match the manifest is refused, opt-in or not.

Regenerate the manifest after changing a shipped agent::

    python -m deploy_envs.trust
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from deploy_envs.data.download import file_sha256 as sha256_file

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
_IGNORED = {"__pycache__", ".DS_Store"}


class UntrustedAgentError(ValueError):
    """Loading this agent needs ``trust_agent_code=True``: its bytes are not vouched for by the shipped manifest."""


class TamperedAgentError(ValueError):
    """A shipped agent file does not match the sha256 manifest (or is missing, or was added)."""


def shipped_agents_root() -> Path:
    from deploy_envs.agent_zoo import shipped_agents_dir

    return shipped_agents_dir()


def _agent_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not (_IGNORED & set(p.parts)))


def write_agents_manifest(root: str | Path | None = None) -> Path:
    """Hash every file of every agent folder under ``root`` (default: the shipped zoo) into its manifest."""
    root = Path(root) if root is not None else shipped_agents_root()
    files = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _IGNORED):
        for f in _agent_files(folder):
            files[f.relative_to(root).as_posix()] = sha256_file(f)
    out = root / MANIFEST_NAME
    out.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1, sort_keys=True) + "\n")
    return out


def read_manifest(root: Path) -> dict[str, str]:
    path = root / MANIFEST_NAME
    if not path.exists():
        raise TamperedAgentError(f"the shipped agent manifest {path.name} is missing from {root}; reinstall deploy_envs")
    return json.loads(path.read_text())["files"]


_VERIFIED: dict[tuple, bool] = {}


def verify_shipped_folder(folder: Path, root: Path | None = None) -> None:
    """Check every file of a shipped agent folder against the manifest; raise :class:`TamperedAgentError`."""
    root = (root or shipped_agents_root()).resolve()
    folder = folder.resolve()
    name = folder.relative_to(root).parts[0]
    folder = root / name
    manifest = read_manifest(root)
    prefix = name + "/"
    expected = {k: v for k, v in manifest.items() if k.startswith(prefix)}
    files = _agent_files(folder)
    key = (str(folder), tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files), tuple(sorted(expected.items())))
    if _VERIFIED.get(key):
        return
    if not expected:
        raise TamperedAgentError(f"agent folder {name!r} is in the shipped zoo but not in its manifest; refusing to load it")
    seen = set()
    for f in files:
        rel = f.relative_to(root).as_posix()
        seen.add(rel)
        want = expected.get(rel)
        if want is None:
            raise TamperedAgentError(f"shipped agent {name!r} has a file the manifest does not list: {rel}; refusing to load it")
        got = sha256_file(f)
        if got != want:
            raise TamperedAgentError(
                f"shipped agent file {rel} does not match the manifest (sha256 {got[:12]}..., expected {want[:12]}...); "
                "it was modified after installation; refusing to load it (reinstall deploy_envs)"
            )
    missing = sorted(set(expected) - seen)
    if missing:
        raise TamperedAgentError(f"shipped agent {name!r} is missing files listed in the manifest: {', '.join(missing)}")
    _VERIFIED[key] = True


def is_shipped(path: str | Path) -> bool:
    root = shipped_agents_root().resolve()
    try:
        Path(path).resolve().relative_to(root)
    except ValueError:
        return False
    return True


def check_agent_path(path: str | Path, trust_agent_code: bool = False, what: str = "agent") -> None:
    """Allow loading ``path`` (an SB3 zip, an agent folder or an RLlib checkpoint), or raise.

    Inside the shipped zoo the agent's folder must match the manifest (else
    :class:`TamperedAgentError`, opt-in or not). Elsewhere ``trust_agent_code`` must be
    ``True`` (else :class:`UntrustedAgentError`), and a warning is issued.
    """
    path = Path(path)
    if is_shipped(path):
        root = shipped_agents_root().resolve()
        if path.resolve() == root:
            raise TamperedAgentError(f"{what}={str(path)!r} is the zoo folder itself, not an agent")
        verify_shipped_folder(path, root)
        return
    if not trust_agent_code:
        raise UntrustedAgentError(
            f"{what}={str(path)!r} is not a shipped agent whose files match the sha256 manifest; SB3 zips and RLlib "
            "checkpoints can execute code when loaded. Load it only if you trust its source: pass "
            "trust_agent_code=True (command line: --trust-agent-code)"
        )
    message = f"loading {what}={str(path)!r} from outside the shipped zoo (trust_agent_code=True): SB3 zips and RLlib checkpoints can execute code"
    log.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(write_agents_manifest())

"""The documentation site, generated from the code and built with mkdocs-material (the ``docs`` extra).

``deploy-envs docs build [--out DIR]`` (or :func:`build`) writes one Markdown page per
registered env and game from its docstring and its registration (the spaces as Gymnasium
prints them, the constructor's arguments with their defaults and allowed values, the
reference and shipped agents with their card scores, the scenarios that use it), pages
for the command line (walked from the typer app), the zoo, the scenarios, the games, the
performance tables, the quick start (read from ``README.md``) and the architecture (read from
``ARCHITECTURE.md``), then runs ``mkdocs build`` in strict mode (a warning fails the build).
Nothing is fetched: the theme's web fonts are off and only the built-in search plugin runs.

The hand-written pages, the base ``mkdocs.yml`` and the animations live in ``docs/`` at the
repository root. A hand-written page at the path of a generated one (``cli.md``, ``zoo.md``,
``scenarios.md``, ``performance.md``, ``envs/index.md``, ``games/index.md``) is that page's
first part: the generated part follows it (see :data:`MERGED_PAGES`). The animations (one GIF per env and game, a reference agent playing it from
``render_mode="rgb_array"`` frames) are committed; regenerate them with
``python -m deploy_envs.docs_site animations`` (optionally ``--ids ID ...``).
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the repository root of this checkout (the site is built from a checkout, not from a wheel)
REPO_ROOT = Path(__file__).resolve().parents[1]
ANIMATION_DIR = "animations"


def docs_dir(root: Path | None = None) -> Path:
    root = Path(root) if root is not None else REPO_ROOT
    d = root / "docs"
    if not (d / "mkdocs.yml").exists():
        raise ValueError(f"root={str(root)!r} has no docs/mkdocs.yml: the site is built from a checkout of the repository")
    return d


def page_name(env_id: str) -> str:
    """``deploy_envs/Evasion-v0`` -> ``Evasion-v0`` (the page's and the animation's file stem)."""
    return env_id.split("/", 1)[1]


def animation_path(env_id: str, root: Path | None = None) -> Path:
    return docs_dir(root) / ANIMATION_DIR / f"{page_name(env_id)}.gif"


# --------------------------------------------------------------------------- docstrings
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def docstring_markdown(doc: str | None) -> str:
    """A Gymnasium-style docstring (``## Section`` headings, reST literals) as Markdown."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = re.sub(r"``([^`]+?)``", r"`\1`", text)
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith("|"):
            stripped = line.rstrip()[:-2].rstrip()
            out.append(stripped + ":" if stripped else "")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block: list[str] = []
            base = len(line) - len(line.lstrip())
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            code = inspect.cleandoc("\n".join(block)) if block else ""
            out += ["", "```text", code, "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip() + "\n"


def doc_sections(doc: str | None) -> dict[str, str]:
    """``{section title: body}`` of a docstring's ``## `` sections (the text before the first, if any, under ``""``)."""
    sections: dict[str, str] = {}
    title, body = "", []
    for line in docstring_markdown(doc).splitlines():
        m = re.match(r"^##\s+(.+?)\s*$", line)
        if m:
            sections[title] = "\n".join(body).strip()
            title, body = m.group(1), []
        else:
            body.append(line)
    sections[title] = "\n".join(body).strip()
    return {k: v for k, v in sections.items() if k or v}


#: the order of Gymnasium's env pages; other sections of a docstring follow, in their own order
SECTION_ORDER = ("Description", "Agents", "Action Space", "Action Spaces", "Observation Space", "Observation Spaces", "Rewards",
                 "Starting State", "Episode End", "Info", "Arguments", "Version History")


# --------------------------------------------------------------------------- registration facts
def _table_section(title: str, intro: str, header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> list[str]:
    """A page section: ``## title``, then ``intro`` and a Markdown table of ``rows``, or the ``empty`` sentence."""
    lines = [f"## {title}", ""]
    if rows:
        lines += [intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        lines.append(empty)
    return lines + [""]


def _md_cell(value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def _code(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) or not value else value
    return f"`{_md_cell(text)}`" if "`" not in text else _md_cell(text)


def arguments_table(cls: type) -> str:
    """Markdown table of a core's constructor arguments: default, type and what is allowed."""
    from deploy_envs.core.validation import (MAX_INT_ARGUMENT, _describe, _init_chain, _matches, _range_text, constructor_arguments,
                                              constructor_hints)

    args = constructor_arguments(cls)
    if not args:
        return "The constructor takes no keyword arguments.\n" if args == {} else "The constructor forwards any keyword argument.\n"
    hints = constructor_hints(cls)
    specs: dict[str, Any] = {}
    for klass in reversed(_init_chain(cls) or [cls]):
        specs.update(getattr(klass, "arguments", {}) or {})
    rows = ["| argument | default | type | allowed |", "|---|---|---|---|"]
    for name, default in args.items():
        hint = hints.get(name)
        spec = specs.get(name)
        allowed = ""
        if spec is not None:
            if spec.choices is not None:
                allowed = ", ".join(_code(c) for c in spec.choices)
            elif spec.low is not None or spec.high is not None:
                allowed = _range_text(spec.low, spec.high, spec.low_inclusive, spec.high_inclusive).strip()
            if spec.max_len is not None:
                allowed += f"{'; ' if allowed else ''}at most {spec.max_len} entries"
            if spec.why:
                allowed += f" ({spec.why})"
        default_text = "(required)" if default is inspect.Parameter.empty else f"`{_md_cell(repr(default))}`"
        is_int = hint is not None and _matches(0, hint) and not _matches(0.5, hint)
        if not allowed and is_int and "seed" not in name:
            allowed = f"at most {MAX_INT_ARGUMENT:,}"
        rows.append(f"| `{name}` | {default_text} | {_md_cell(_describe(hint)) if hint is not None else ''} | {_md_cell(allowed)} |")
    return "\n".join(rows) + "\n"


def env_spaces(env_id: str) -> tuple[dict[str, str], str]:
    """The spaces of the env or game at its default arguments, as Gymnasium prints them, and a note.

    Returns ``({"action space": ..., "observation space": ...}, note)``; games give one entry
    per role. When the defaults need an extra that is missing, the note says so.
    """
    import gymnasium as gym

    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, make_game

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if env_id in ENV_CATALOG:
                env = gym.make(env_id)
                out = {"action space": str(env.action_space), "observation space": str(env.observation_space)}
                env.close()
            else:
                game = make_game(env_id)
                out = {}
                for agent in game.possible_agents:
                    out[f"{agent}: action space"] = str(game.action_space(agent))
                    out[f"{agent}: observation space"] = str(game.observation_space(agent))
                game.close()
        return out, ""
    except ImportError as exc:
        entry = ENV_CATALOG.get(env_id) or GAME_CATALOG[env_id]
        return {}, f"The spaces could not be printed here: {exc} (the `{entry.extra}` extra)."


def baselines_for(env_id: str) -> list[Any]:
    from deploy_envs.core.agents import BASELINES

    return [b for b in BASELINES.values() if env_id in b.envs]


def cards_for(env_id: str) -> list[Any]:
    from deploy_envs.agent_zoo import list_agents, shipped_agents_dir

    return [c for c in list_agents(shipped_agents_dir()) if c.env_id == env_id]


def scenario_files() -> list[dict[str, Any]]:
    """Every shipped scenario as ``{"file", "name", "env", "description", "reference", "expect"}``."""
    import yaml

    folder = Path(__file__).resolve().parent / "scenarios"
    out = []
    for p in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        out.append({"file": p.name, "name": data.get("name", p.stem), "env": data.get("env", ""),
                    "description": " ".join(str(data.get("description", "")).split()),
                    "reference": " ".join(str(data.get("reference", "")).split()), "expect": list(data.get("expect", []) or [])})
    return out


def card_scores(card: Any, limit: int = 6) -> str:
    """The first evaluation of a card in one cell: ``metric value, ...`` with its episodes."""
    if not card.evaluations:
        return ""
    ev = card.evaluations[0]
    parts = []
    for k, v in list(ev.get("metrics", {}).items())[:limit]:
        if isinstance(v, dict):
            v = v.get("mean", next(iter(v.values()), ""))
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    where = f" ({ev['episodes']} episodes)" if ev.get("episodes") else (f" ({ev['label']})" if ev.get("label") else "")
    return _md_cell(", ".join(parts) + where)


# --------------------------------------------------------------------------- pages
@dataclass
class Page:
    path: str  # relative to the docs dir, e.g. "envs/Evasion-v0.md"
    title: str
    text: str


#: search weight of an env's or game's page against the other pages (Material's ``search.boost`` front matter)
ENV_PAGE_SEARCH_BOOST = 4


def env_page(env_id: str, root: Path | None = None, scenarios: list[dict[str, Any]] | None = None) -> Page:
    """The page of one registered env or game."""
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG, core_of

    entry = ENV_CATALOG.get(env_id) or GAME_CATALOG.get(env_id)
    if entry is None:
        raise ValueError(f"env_id={env_id!r} is not registered")
    core = core_of(env_id)
    name = page_name(env_id)
    folder = "games" if entry.kind == "game" else "envs"
    # front matter: the theme's search ranks an env's own page above pages that only mention its id
    lines = ["---", "search:", f"  boost: {ENV_PAGE_SEARCH_BOOST}", "---", "", f"# {name}", "", f"{entry.summary}", ""]
    gif = animation_path(env_id, root)
    if gif.exists():
        meta = _animation_meta(gif)
        caption = f"{meta.get('agent', 'a reference agent')} playing {name}" if meta else f"a reference agent playing {name}"
        lines += [f'<figure markdown="span">', f"  ![{caption}](../{ANIMATION_DIR}/{name}.gif)", f"  <figcaption>{_md_cell(caption)}</figcaption>", "</figure>", ""]
    else:
        lines += [f"*No animation: {name} does not render to `rgb_array` yet.*", ""]
    extra_text = f'`pip install "deploy-envs[{entry.extra}]"`' if entry.extra else "none (the base install runs it)"
    make = f'gymnasium.make("{env_id}")' if entry.kind == "env" else f'deploy_envs.make_game("{env_id}")'
    lines += ["| registration | |", "|---|---|", f"| id | `{env_id}` |", f"| kind | {'Gymnasium env' if entry.kind == 'env' else 'PettingZoo parallel game'} |",
              f"| topic | {entry.topic} |", f"| make | `{make}` |"]
    if entry.kind == "env":
        lines.append(f'| batch | `gymnasium.make_vec("{env_id}", num_envs=N)` (native batch) |')
    lines += [f"| core | `{entry.core}` |", f"| render modes | {', '.join(f'`{m}`' for m in core.metadata.get('render_modes', [])) or 'none'} |",
              f"| extra | {extra_text} |", ""]
    sections = doc_sections(core.__doc__)
    intro = sections.pop("", "")
    if intro:
        lines += [intro, ""]
    for title in [*(t for t in SECTION_ORDER if t in sections), *(t for t in sections if t not in SECTION_ORDER)]:
        lines += [f"## {title}", "", sections[title], ""]
    spaces, note = env_spaces(env_id)
    lines += ["## Spaces as Gymnasium prints them", "", "At the default arguments.", ""]
    for k, v in spaces.items():
        lines += [f"**{k}**", "", "```text", v, "```", ""]
    if note:
        lines += [note, ""]
    lines += ["## Argument table", "", "From the constructor (defaults) and its declared checks (allowed values); a refused value raises "
              "a `ValueError` or `TypeError` naming it.", "", arguments_table(core)]
    lines += _table_section(
        "Reference agents", "Baselines by name (`deploy-envs evaluate ID --baseline NAME`):", ("baseline", "what it does", "extra"),
        [(f"`{b.name}`", _md_cell(b.summary), b.extra or "") for b in baselines_for(env_id)],
        "No baseline is registered for this id (`random` applies to every env).",
    )
    lines += _table_section(
        "Shipped agents", "Trained agents in the shipped zoo with the scores on their cards (see the [zoo](../zoo.md)):",
        ("agent", "algorithm", "timesteps", "scores (first evaluation on the card)"),
        [(f"`{c.name}`", c.algorithm, f"{c.timesteps:,}", card_scores(c)) for c in cards_for(env_id)],
        "No trained agent for this id ships in the zoo.",
    )
    scen = [s for s in (scenarios if scenarios is not None else scenario_files()) if s["env"] == env_id]
    lines += _table_section(
        "Scenarios", "Run one with `deploy-envs run NAME` (see [all scenarios](../scenarios.md)):", ("scenario", "reference", "description"),
        [(f"`{Path(s['file']).stem}`", _md_cell(s["reference"]), _md_cell(s["description"])) for s in scen],
        "No shipped scenario uses this id.",
    )
    return Page(f"{folder}/{name}.md", name, "\n".join(lines))


def _animation_meta(gif: Path) -> dict[str, Any]:
    meta = gif.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.exists() else {}


def catalog_page(kind: str) -> Page:
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    catalog = ENV_CATALOG if kind == "env" else GAME_CATALOG
    folder = "envs" if kind == "env" else "games"
    title = "Environments" if kind == "env" else "Games"
    lines = [f"# {title}", ""]
    if kind == "env":
        lines += ["Every environment is a Gymnasium env (`gymnasium.make(id)`) and a native batch (`gymnasium.make_vec(id, num_envs=N)`) "
                  "of the same core.", ""]
    else:
        lines += ["Every game is a PettingZoo parallel env (`deploy_envs.make_game(id)`), solved by one trainer, PSRO "
                  "(`deploy-envs solve GAME_ID`).", ""]
    by_topic: dict[str, list[Any]] = {}
    for e in catalog.values():
        by_topic.setdefault(e.topic, []).append(e)
    for topic in sorted(by_topic):
        lines += [f"## {topic.capitalize()}", "", "| id | summary | extra |", "|---|---|---|"]
        for e in sorted(by_topic[topic], key=lambda x: x.id):
            lines.append(f"| [`{e.id}`]({page_name(e.id)}.md) | {_md_cell(e.summary)} | {e.extra or ''} |")
        lines.append("")
    return Page(f"{folder}/index.md", title, "\n".join(lines))


def _param_type(p: Any) -> str:
    """A command parameter's type name (click's ``type.name``, or typer's own ``bare_type()``)."""
    t = getattr(p, "type", None)
    if t is not None and getattr(t, "name", None):
        return str(t.name)
    bare = getattr(p, "bare_type", None)
    return str(bare()) if callable(bare) else ""


def cli_page() -> Page:
    """Every command of ``deploy-envs`` with its arguments and options, walked from the typer app's click tree."""
    import typer

    from deploy_envs.cli import app

    root_cmd = typer.main.get_command(app)
    lines = ["# Command line", "", "The `deploy-envs` command (also `python -m deploy_envs.cli`). Generated from the command's own definitions.", ""]

    def walk(cmd: Any, path: list[str]) -> None:
        ctx = cmd.context_class(cmd, info_name=" ".join(["deploy-envs", *path]))
        if path:
            lines.extend([f"## `deploy-envs {' '.join(path)}`", "", docstring_markdown(cmd.help).strip(), ""])
            usage = " ".join(cmd.collect_usage_pieces(ctx))
            lines.extend(["```text", f"deploy-envs {' '.join(path)} {usage}".rstrip(), "```", ""])
            params = [p for p in cmd.params if not getattr(p, "hidden", False)]
            if params:
                lines.extend(["| argument or option | type | default | help |", "|---|---|---|---|"])
                for p in params:
                    if p.param_type_name == "argument":
                        names = getattr(p, "metavar", None) or p.name.upper()
                    else:
                        names = " / ".join([*p.opts, *getattr(p, "secondary_opts", [])])
                    default = None if callable(p.default) else p.default
                    default_text = "(required)" if p.required else ("" if default in (None, [], ()) else f"`{default}`")
                    lines.append(f"| `{_md_cell(names)}` | {_md_cell(_param_type(p))} | {_md_cell(default_text)} | {_md_cell(getattr(p, 'help', '') or '')} |")
                lines.append("")
        if hasattr(cmd, "list_commands"):
            for name in sorted(cmd.list_commands(ctx)):
                walk(cmd.get_command(ctx, name), [*path, name])

    walk(root_cmd, [])
    return Page("cli.md", "Command line", "\n".join(lines))


def zoo_page() -> Page:
    from deploy_envs.agent_zoo import list_agents, shipped_agents_dir

    lines = ["# Zoo", ""]
    manifest = REPO_ROOT / "deploy_envs" / "models" / "weights" / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        entries = data.get("models", data) if isinstance(data, dict) else data
        lines += ["## Victim weight files", "", "Shipped in the package (`deploy_envs/models/weights/`), each verified by its sha256 before use "
                  "(`deploy-envs zoo list`).", "", "| model | file | what | metrics |", "|---|---|---|---|"]
        items = entries.items() if isinstance(entries, dict) else ((e.get("name", "?"), e) for e in entries)
        for name, e in items:
            if not isinstance(e, dict):
                continue
            metrics = e.get("metrics", {})
            mtext = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()) if isinstance(metrics, dict) else str(metrics)
            what = e.get("recipe", e.get("description", ""))
            if isinstance(what, dict):
                what = ", ".join(f"{k} {v}" for k, v in list(what.items())[:6])
            lines.append(f"| `{name}` | `{e.get('file', '')}` | {_md_cell(what)} | {_md_cell(mtext)} |")
        lines.append("")
    lines += ["## Trained agents", "", "Shipped with the package (`deploy_envs/agents/NAME/`: weights, `card.json`, sha256 in the manifest); "
              "`deploy-envs evaluate ENV_ID --agent NAME` plays one.", "",
              "| agent | env or game | algorithm | timesteps | scores (first evaluation on the card) |", "|---|---|---|---|---|"]
    for c in list_agents(shipped_agents_dir()):
        target = f"[`{page_name(c.env_id)}`]({_page_link(c.env_id)})" if _page_link(c.env_id) else f"`{c.env_id}`"
        lines.append(f"| `{c.name}` | {target} | {c.algorithm} | {c.timesteps:,} | {card_scores(c)} |")
    lines.append("")
    return Page("zoo.md", "Zoo", "\n".join(lines))


def _page_link(env_id: str) -> str | None:
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    if env_id in ENV_CATALOG:
        return f"envs/{page_name(env_id)}.md"
    if env_id in GAME_CATALOG:
        return f"games/{page_name(env_id)}.md"
    return None


def scenarios_page(scenarios: list[dict[str, Any]]) -> Page:
    lines = ["# Scenarios", "", "## Every shipped scenario", "", "A scenario is a YAML recipe: an env, agents, a protocol and the expected outcome. "
             "`deploy-envs run NAME` measures it and checks the expectations.", "", "| scenario | env | reference | checks |", "|---|---|---|---|"]
    for s in scenarios:
        link = _page_link(s["env"])
        env = f"[`{page_name(s['env'])}`]({link})" if link else f"`{s['env']}`"
        checks = "<br>".join(f"`{_md_cell(e)}`" for e in s["expect"])
        lines.append(f"| `{Path(s['file']).stem}` | {env} | {_md_cell(s['reference'])} | {checks} |")
    lines.append("")
    return Page("scenarios.md", "Scenarios", "\n".join(lines))


# ---- pages read from README.md and ARCHITECTURE.md, and the hand-written parts of generated pages
#: generated pages whose first part is the hand-written page at the same path under ``docs/``
MERGED_PAGES = ("envs/index.md", "games/index.md", "cli.md", "scenarios.md", "zoo.md", "performance.md")


def merge_page(hand: str, generated: str) -> str:
    """A hand-written page (its own ``# title``) followed by the generated one without its title line."""
    lines = generated.split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return hand.rstrip() + "\n\n" + "\n".join(lines).lstrip("\n")


def _readme_text() -> str:
    p = REPO_ROOT / "README.md"
    return p.read_text(encoding="utf-8") if p.exists() else ""


def _markdown_section(text: str, heading: str, level: int = 2) -> str:
    """The section under ``## heading`` (up to the next heading of the same or a higher level), heading included."""
    marks = "#" * level
    m = re.search(rf"^{marks} {re.escape(heading)}\s*$", text, flags=re.M)
    if not m:
        return ""
    rest = text[m.end():]
    stop = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return _relink(text[m.start(): m.end() + (stop.start() if stop else len(rest))].strip())


def _readme_section(heading: str) -> str:
    return _markdown_section(_readme_text(), heading)


def _strip_first_heading(section: str) -> str:
    return section.split("\n", 1)[1].strip() if "\n" in section else ""


def _relink(text: str) -> str:
    """Links to files of the repository become code spans (the site holds pages, not the repository's files)."""
    def fix(m: re.Match) -> str:
        label, target = m.group(1), m.group(2)
        if re.match(r"^[a-z]+://", target) or target.startswith("#") or target.startswith("mailto:"):
            return m.group(0)
        return f"{label} (`{target}`)"

    text = re.sub(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)", fix, text)
    return re.sub(r"!\[[^\]]*\]\((?![a-z]+://)[^)]+\)", "", text)


def performance_page() -> Page:
    lines = ["# Performance", ""]
    summary = REPO_ROOT / "benchmarks" / "results" / "summary.json"
    if summary.exists():
        lines += ["## Summary of the benchmark results", "", "From `benchmarks/results/summary.json`:", "", "```json",
                  json.dumps(json.loads(summary.read_text()), indent=1)[:20000], "```"]
    return Page("performance.md", "Performance", "\n".join(lines) + "\n")


def quickstart_page() -> Page:
    readme = _readme_text()
    quick = _readme_section("Quick start")
    lines = ["# Quick start", "", _strip_first_heading(quick) if quick else "", ""]
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    if blocks:
        lines += ["## A first example", "", "```python", blocks[0].rstrip(), "```", ""]
    lines += ["## Next", "", "- [Environments](envs/index.md) and [Games](games/index.md): every id, with a page each.",
              "- [Scenarios](scenarios.md): the reproduced results.", "- [Command line](cli.md): every `deploy-envs` command.",
              "- [Checking your own env or game](checking.md): the conformance checks as library calls.", ""]
    return Page("quickstart.md", "Quick start", "\n".join(lines))


def architecture_pages() -> list[Page]:
    p = REPO_ROOT / "ARCHITECTURE.md"
    text = _relink(p.read_text(encoding="utf-8")) if p.exists() else "# Architecture\n"
    adding = [s for s in ("Adding an env to a topic: one module and one registration line", "Adding a baseline",
                          "Adding a trained agent", "Adding a game") if _markdown_section(text, s)]
    how = ["# How to add an env", "", "From the architecture notes (`ARCHITECTURE.md`, whose examples are tested).", ""]
    how += [_markdown_section(text, s) + "\n" for s in adding]
    return [Page("architecture.md", "Architecture", text), Page("add-an-env.md", "How to add an env", "\n".join(how))]


def generate_pages(root: Path | None = None, progress: bool = False) -> list[Page]:
    """Every generated page (envs, games, catalogs, CLI, zoo, scenarios, performance, architecture)."""
    import deploy_envs  # noqa: F401  (registers the catalog)
    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    scenarios = scenario_files()
    ids = [*sorted(ENV_CATALOG), *sorted(GAME_CATALOG)]
    pages = [catalog_page("env"), catalog_page("game")]
    iterator: Any = ids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(ids, desc="env and game pages", unit="page")
    for env_id in iterator:
        pages.append(env_page(env_id, root, scenarios))
    pages += [quickstart_page(), cli_page(), zoo_page(), scenarios_page(scenarios), performance_page(), *architecture_pages()]
    return pages


#: hand-written pages of ``docs/`` with no generated part, in the navigation's order
HAND_WRITTEN_PAGES = (("Scale-out on Ray RLlib", "rllib.md"), ("Checking your own env or game", "checking.md"), ("Layout", "layout.md"))


def _nav(pages: list[Page]) -> list[Any]:
    by_path = {p.path: p for p in pages}
    envs = [{p.title: p.path} for p in pages if p.path.startswith("envs/") and p.path != "envs/index.md"]
    games = [{p.title: p.path} for p in pages if p.path.startswith("games/") and p.path != "games/index.md"]
    nav: list[Any] = [{"Home": "index.md"}]
    for path in ("quickstart.md",):
        nav.append({by_path[path].title: path})
    nav.append({"Environments": [{"Overview": "envs/index.md"}, *envs]})
    nav.append({"Games": [{"Overview": "games/index.md"}, *games]})
    for path in ("scenarios.md", "zoo.md", "cli.md", "performance.md"):
        nav.append({by_path[path].title: path})
    nav += [{title: path} for title, path in HAND_WRITTEN_PAGES]
    for path in ("architecture.md", "add-an-env.md"):
        nav.append({by_path[path].title: path})
    return nav


def build(out: Path | str | None = None, root: Path | None = None, *, strict: bool = True, progress: bool = False) -> dict[str, Any]:
    """Generate the pages and build the site into ``out`` (default ``site/`` under the root).

    Returns ``{"out", "pages", "seconds"}`` (``pages``: the HTML pages written). Raises
    :class:`MissingExtraError` without the ``docs`` extra, and ``RuntimeError`` when mkdocs
    fails (in strict mode, any warning).
    """
    from deploy_envs.core.extras import require

    require("mkdocs", extra="docs", feature="building the documentation site")
    require("material", extra="docs", feature="the documentation site's theme (mkdocs-material)")
    import yaml

    start = time.perf_counter()
    src = docs_dir(root)
    out = Path(out) if out is not None else (Path(root) if root is not None else REPO_ROOT) / "site"
    pages = generate_pages(root, progress=progress)
    config = yaml.safe_load((src / "mkdocs.yml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="deploy-envs-docs-") as tmp:
        stage = Path(tmp) / "docs"
        shutil.copytree(src, stage, ignore=shutil.ignore_patterns("mkdocs.yml", "*.json"))
        for page in pages:
            target = stage / page.path
            text = page.text
            if target.exists():
                if page.path not in MERGED_PAGES:
                    raise RuntimeError(f"generated page {page.path} would overwrite the hand-written one in docs/")
                text = merge_page(target.read_text(encoding="utf-8"), text)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        config.update({"docs_dir": str(stage), "site_dir": str(Path(out).resolve()), "nav": _nav(pages), "strict": strict})
        cfg = Path(tmp) / "mkdocs.yml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        _run_mkdocs(cfg, strict)
    html = sorted(Path(out).rglob("index.html"))
    return {"out": Path(out), "pages": len(html), "generated": len(pages), "seconds": time.perf_counter() - start}


def _run_mkdocs(cfg: Path, strict: bool) -> None:
    """``mkdocs build`` in this process, with every warning of mkdocs collected (strict: they fail the build)."""
    import logging

    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    class _Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    handler = _Collect()
    log = logging.getLogger("mkdocs")
    log.addHandler(handler)
    try:
        config = load_config(str(cfg), strict=strict)
        try:
            mkdocs_build(config)
        except SystemExit as exc:  # mkdocs aborts a strict build with SystemExit
            raise RuntimeError(f"mkdocs build failed ({exc}): " + "; ".join(handler.messages)) from None
        except Exception as exc:
            if type(exc).__name__ == "Abort":
                raise RuntimeError(f"mkdocs build failed: {exc}: " + "; ".join(handler.messages)) from None
            raise
    finally:
        log.removeHandler(handler)
    if strict and handler.messages:
        raise RuntimeError("mkdocs warned (strict build): " + "; ".join(handler.messages))


# --------------------------------------------------------------------------- animations
#: what an animation's policy may be (recorded as ``policy.kind`` in its ``.json``); random actions are none of them
POLICY_KINDS = ("shipped_agent", "scenario_agent", "baseline", "psro_population", "scripted")


def is_random_policy(name: str) -> bool:
    """Whether a baseline or scripted policy of this name acts at random (``random``, ``random_queries``, ...)."""
    return name == "random" or name.startswith("random_")


def _loads_without_extras(name: str) -> bool:
    from deploy_envs.agent_zoo import shipped_agents_dir

    folder = shipped_agents_dir() / name
    return folder.is_dir() and not (folder / "rllib_checkpoint").exists() and not (folder / "psro.json").exists()


def scenario_zoo_agents(env_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The zoo agents the shipped scenarios on ``env_id`` run: ``(scenario, role in it, zoo name, env kwargs)``."""
    import yaml

    out = []
    for p in sorted((Path(__file__).resolve().parent / "scenarios").glob("*.yaml")):
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if data.get("env") != env_id:
            continue
        for role, spec in (data.get("agents") or {}).items():
            if isinstance(spec, dict) and isinstance(spec.get("zoo"), str):
                kwargs = {**(data.get("env_kwargs") or {}), **(spec.get("env_kwargs") or {})}
                out.append((p.stem, str(role), spec["zoo"], {k: v for k, v in kwargs.items() if k != "split"}))
    return out


def animation_agents(env_id: str):
    """The policies an env's animation may show, best first: ``(policy, make_agent, env_kwargs)``.

    ``policy`` is ``{"kind", "name", "label"}`` with ``kind`` one of :data:`POLICY_KINDS`.
    First the env's shipped trained agents that load with the base install (SB3 or tabular,
    not RLlib or PSRO populations; the one trained closest to the env's defaults first), then
    the zoo agents that the shipped scenarios on the env run (e.g. the RARL protagonist that
    ``rarl_disturbance`` tests on DisturbedNavigation-v0, against the shipped RARL adversary),
    then the env's registered baselines that need no missing extra. Never random actions
    (neither the ``random`` baseline nor a ``random_*`` one).
    """
    from deploy_envs.agent_zoo import load_agent, read_card, shipped_agents_dir
    from deploy_envs.core.agents import make_baseline
    from deploy_envs.core.extras import available
    from deploy_envs.core.registration import env_arguments

    defaults = env_arguments(env_id) or {}

    def changed(card: Any) -> int:
        return sum(1 for k, v in card.env_kwargs.items() if k != "split" and defaults.get(k, object()) != v)

    def load(name: str) -> Any:
        return load_agent(name)[0]

    seen = set()
    for card in sorted(cards_for(env_id), key=lambda c: (changed(c), c.name)):
        if not _loads_without_extras(card.name):
            continue
        seen.add(card.name)
        kwargs = {k: v for k, v in card.env_kwargs.items() if k != "split"}
        yield ({"kind": "shipped_agent", "name": card.name, "label": f"shipped agent {card.name} ({card.algorithm})"},
               functools.partial(load, card.name), kwargs)
    for scenario, role, name, kwargs in scenario_zoo_agents(env_id):
        if name in seen or not _loads_without_extras(name):
            continue
        seen.add(name)
        card = read_card(shipped_agents_dir() / name)
        opponent = f"opponent {kwargs['opponent']}, " if isinstance(kwargs.get("opponent"), str) else ""
        yield ({"kind": "scenario_agent", "name": name, "scenario": scenario, "role": role,
                "label": f"shipped agent {name} ({card.algorithm}; {opponent}as in scenario {scenario})"},
               functools.partial(load, name), kwargs)
    for b in baselines_for(env_id):
        if is_random_policy(b.name) or not (b.extra is None or available(b.extra)):
            continue
        yield {"kind": "baseline", "name": b.name, "label": f"baseline {b.name}"}, functools.partial(make_baseline, b.name, env_id), {}


def _to_image(frame: Any, width: int):
    from PIL import Image
    import numpy as np

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)
    elif img.width * 2 <= width:  # small pixel art (gridworlds): scale by a whole factor, pixels kept sharp
        k = width // img.width
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    return img.convert("RGB")


def _moving_share(images: list[Any]) -> float:
    """The share of consecutive frames that differ (an agent stuck against a wall gives a still picture)."""
    import numpy as np

    if len(images) < 2:
        return 0.0
    arrays = [np.asarray(im) for im in images]
    return sum(not np.array_equal(a, b) for a, b in zip(arrays, arrays[1:])) / (len(arrays) - 1)


def _save_gif(frames: list[Any], path: Path, fps: float) -> None:
    from PIL import Image

    paletted = [f.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    paletted[0].save(path, save_all=True, append_images=paletted[1:], duration=max(40, int(1000 / fps)), loop=0, optimize=True)


#: an agent whose picture changes in fewer of its steps than this gives way to the next candidate
MIN_MOVING_SHARE = 0.5


def _play_env(env_id: str, make_agent: Any, kwargs: dict[str, Any], frames: int, width: int, seed: int) -> tuple[list[Any], int, float]:
    import gymnasium as gym
    import numpy as np

    agent = make_agent()
    env = gym.make_vec(env_id, num_envs=1, render_mode="rgb_array", **kwargs)
    try:
        agent.setup(env)
        obs, _ = env.reset(seed=seed)
        start = np.ones(1, bool)
        images = [_to_image(env.render()[0], width)]
        episodes = 0
        while len(images) < frames:
            action = agent.act(obs, start)
            obs, _, term, trunc, _ = env.step(action)
            start = np.logical_or(term, trunc)
            episodes += int(start[0])
            images.append(_to_image(env.render()[0], width))
        fps = float(env.metadata.get("render_fps") or 4)
    finally:
        env.close()
    return images, episodes, fps


def _gif_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_best(target: str, path: Path, seed: int, attempts, missing: str) -> dict[str, Any]:
    """Save as a GIF the first of ``attempts`` whose picture moves (else the one that moves most).

    ``attempts`` yields ``(policy, kwargs, play)``; ``play()`` returns ``(policy, images, episodes,
    fps)`` or raises, and the attempt is passed over with its reason.
    """
    tried: list[str] = []
    best = None
    for policy, kwargs, play in attempts:
        try:
            policy, images, episodes, fps = play()
        except Exception as exc:  # noqa: BLE001 - an agent or population that does not load or fit: the next one
            tried.append(f"{policy['label']}: {type(exc).__name__}: {exc}")
            continue
        share = _moving_share(images)
        if best is None or share > best[5]:
            best = (policy, kwargs, images, episodes, fps, share)
        if share >= MIN_MOVING_SHARE:
            break
        tried.append(f"{policy['label']}: the picture changes in only {share:.0%} of the steps")
    if best is None:
        raise RuntimeError(f"{target}: {missing}: {'; '.join(tried) or 'none is registered'}")
    policy, kwargs, images, episodes, fps, share = best
    _save_gif(images, path, min(fps, 6.0))
    return {"id": target, "agent": policy["label"], "policy": policy, "env_kwargs": kwargs, "frames": len(images),
            "episodes_finished": episodes, "seed": seed, "moving_share": round(share, 3), "passed_over": tried}


def record_env(env_id: str, path: Path, *, frames: int = 36, width: int = 320, seed: int = 0) -> dict[str, Any]:
    """Play ``env_id`` with the first of :func:`animation_agents` whose picture moves, and save the frames as a GIF."""

    def attempts():
        for policy, make_agent, kwargs in animation_agents(env_id):
            yield policy, kwargs, lambda policy=policy, make_agent=make_agent, kwargs=kwargs: (
                policy, *_play_env(env_id, make_agent, kwargs, frames, width, seed))

    return _record_best(env_id, path, seed, attempts(), "no shipped agent, scenario agent or baseline could play it")


def game_policies(game_id: str):
    """The policies a game's animation may show, best first: ``(policy, build, game_kwargs)``.

    ``build(core)`` returns ``{role: batch policy}``. First the highest-weight member of each
    role's meta-strategy in each shipped PSRO population of the game (the game made with the
    population's arguments), then the game's scripted policies (the first one of each role
    that is not random). A candidate that would put random actions in any role is left out.
    """
    from deploy_envs.agent_zoo import shipped_agents_dir

    def from_population(folder: Path, core: Any) -> tuple[dict[str, Any], dict[str, str]]:
        import numpy as np

        from deploy_envs.training.psro import meta_strategy_policies
        from deploy_envs.training.roles import as_batch_policy

        meta = meta_strategy_policies(folder, core=core)
        names = {r: m.names[int(np.argmax(m.weights))] for r, m in meta.items()}
        random_roles = [r for r, n in names.items() if is_random_policy(n)]
        if random_roles:
            raise ValueError(f"the population's chosen member of {random_roles} is random")
        return {r: as_batch_policy(m.policies[int(np.argmax(m.weights))], deterministic=True) for r, m in meta.items()}, names

    def scripted(core: Any) -> tuple[dict[str, Any], dict[str, str]]:
        from deploy_envs.training.game_baselines import role_baselines

        chosen, names = {}, {}
        for role, pols in role_baselines(game_id, core).items():
            keep = [n for n in pols if not is_random_policy(n)]
            if not keep:
                raise ValueError(f"role {role!r} has no scripted policy but random")
            chosen[role], names[role] = pols[keep[0]], keep[0]
        return chosen, names

    for card in cards_for(game_id):
        folder = shipped_agents_dir() / card.name
        if (folder / "psro.json").exists():
            kwargs = dict(card.env_kwargs)
            yield ({"kind": "psro_population", "name": card.name, "label": f"shipped PSRO population {card.name}"},
                   functools.partial(from_population, folder), kwargs)
    yield {"kind": "scripted", "name": "scripted policies", "label": "scripted policies"}, scripted, {}


def _play_game(game_id: str, policies: dict[str, Any], game: Any, frames: int, width: int, seed: int) -> tuple[list[Any], int, float]:
    obs, _ = game.reset(seed=seed)
    images = [_to_image(game.render(), width)]
    episodes = 0
    while len(images) < frames:
        if not game.agents:  # the next episode, from its first picture (an episode may be a single round)
            episodes += 1
            obs, _ = game.reset(seed=seed + episodes)
        else:
            obs, *_ = game.step({a: policies[a](obs[a][None])[0] for a in game.agents})
        images.append(_to_image(game.render(), width))
    return images, episodes, float(game.metadata.get("render_fps") or 4)


def record_game(game_id: str, path: Path, *, frames: int = 36, width: int = 320, seed: int = 0) -> dict[str, Any]:
    """Play ``game_id`` with the first of :func:`game_policies` whose picture moves, and save the frames as a GIF."""
    from deploy_envs.core.registration import make_game

    def play(policy, build_policies, kwargs):
        game = make_game(game_id, render_mode="rgb_array", **kwargs)
        try:
            policies, names = build_policies(game.core)
            policy = {**policy, "roles": names, "label": f"{policy['label']} ({', '.join(f'{r}: {n}' for r, n in names.items())})"}
            return (policy, *_play_game(game_id, policies, game, frames, width, seed))
        finally:
            game.close()

    def attempts():
        for policy, build_policies, kwargs in game_policies(game_id):
            yield policy, kwargs, lambda policy=policy, build_policies=build_policies, kwargs=kwargs: play(policy, build_policies, kwargs)

    return _record_best(game_id, path, seed, attempts(), "no shipped population or scripted policies could play it")


def renders_rgb(env_id: str) -> bool:
    from deploy_envs.core.registration import core_of

    return "rgb_array" in core_of(env_id).metadata.get("render_modes", [])


def make_animations(ids: list[str] | None = None, root: Path | None = None, *, frames: int = 36) -> list[dict[str, Any]]:
    """Write ``docs/animations/<Name>-vN.gif`` (and a ``.json`` naming the agent) for every id that renders."""
    import deploy_envs  # noqa: F401
    from tqdm import tqdm

    from deploy_envs.core.registration import ENV_CATALOG, GAME_CATALOG

    ids = ids or [*sorted(ENV_CATALOG), *sorted(GAME_CATALOG)]
    done = []
    for env_id in tqdm(ids, desc="animations", unit="id"):
        if env_id not in ENV_CATALOG and env_id not in GAME_CATALOG:
            raise ValueError(f"id={env_id!r} is not registered")
        if not renders_rgb(env_id):
            tqdm.write(f"skip {env_id}: no rgb_array rendering")
            continue
        path = animation_path(env_id, root)
        record = record_env if env_id in ENV_CATALOG else record_game
        meta = record(env_id, path, frames=frames)
        meta["bytes"] = path.stat().st_size
        meta["gif_sha256"] = _gif_sha256(path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        tqdm.write(f"{env_id}: {meta['frames']} frames, {meta['bytes'] / 1024:.0f} KiB, {meta['agent']}")
        done.append(meta)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The documentation site: build it, or regenerate its animations.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="generate the pages and build the site (strict)")
    b.add_argument("--out", type=Path, default=None)
    a = sub.add_parser("animations", help="regenerate docs/animations/*.gif from rgb_array frames")
    a.add_argument("--ids", nargs="*", default=None)
    a.add_argument("--frames", type=int, default=36)
    args = parser.parse_args(argv)
    if args.command == "build":
        r = build(args.out, progress=True)
        print(f"built {r['pages']} pages into {r['out']} in {r['seconds']:.1f} s")
    else:
        make_animations(args.ids, frames=args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Results files of scenario runs, and everything generated from them.

A recorded run writes ``scenarios/results/<file stem>.json`` with the means, 95% intervals
and n of every metric, the seed, the settings, the git revision, and the sha256 of the
scenario file and of every file of the zoo agents it used (their cards excepted: cards are
refreshed from the results). A results file is *stale* when one of those hashes no longer
matches, which a clean clone can check without file times.

From the results files come the scenario table of ``docs/scenarios.md`` (the generated section
``scenarios``, see :mod:`deploy_envs.generated_sections`) and the scenario evaluations on
the agents' cards (:func:`refresh_cards`)::

    python -m deploy_envs.scenarios.results record safety_lagrangian   # run and write the results file
    python -m deploy_envs.scenarios.results cards                      # refresh the agents' cards
    python -m deploy_envs.generated_sections                           # rewrite the docs' generated sections
    python -m deploy_envs.scenarios.results check                      # stale or missing results, cards out of date
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from deploy_envs.data.download import file_sha256 as sha256_file
from deploy_envs.scenarios.runner import Scenario, ScenarioResult, load_scenario, resolve_scenario, shipped_scenarios_dir

#: card files that are generated from results and therefore not part of an agent's hash
CARD_FILES = ("card.json", "card.md")
#: label prefix of the evaluations :func:`refresh_cards` writes on a card
CARD_LABEL = "scenario "


def results_dir() -> Path:
    """Where the shipped scenarios' results files live (``deploy_envs/scenarios/results``)."""
    return shipped_scenarios_dir() / "results"


def agent_hashes(scn: Scenario) -> dict[str, dict[str, str]]:
    """sha256 of every file of each zoo agent or population the scenario uses (cards excepted), by agent name."""
    from deploy_envs.agent_zoo import resolve_agent_folder

    out: dict[str, dict[str, str]] = {}
    for name, spec in scn.agents.items():
        folder = spec.zoo or spec.population
        if folder:
            root = Path(resolve_agent_folder(folder))
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower() not in CARD_FILES and "__pycache__" not in p.parts)
            out[name] = {str(p.relative_to(root)): sha256_file(p) for p in files}
        elif spec.policy:
            p = Path(spec.policy)
            out[name] = {p.name: sha256_file(p)} if p.is_file() else {}
    return out


def git_revision(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` (with ``+dirty`` when the tree has changes), or ``"unknown"`` outside a checkout."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def _plain(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    try:
        return float(v)
    except (TypeError, ValueError):
        return repr(v)


def results_record(result: ScenarioResult, scenario_path: str | Path, *, command: str = "") -> dict[str, Any]:
    """The JSON-able results record of a run (see the module docstring)."""
    scn = result.scenario
    path = resolve_scenario(scenario_path)
    rows = []
    for i, row in enumerate(result.rows):
        ivs = result.intervals[i] if i < len(result.intervals) else {}
        point = {k: row[k] for k in scn.sweep if k in row}
        metrics = {}
        for k, v in row.items():
            if k in ("agent", "n") or k in point or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            iv = ivs.get(k)
            metrics[k] = iv.to_dict() if iv is not None else {"mean": float(v), "low": None, "high": None, "n": row.get("n"), "method": "none"}
        rows.append({"agent": row["agent"], "point": point, "n": row.get("n"), "metrics": metrics})
    return _plain({
        "scenario": scn.name,
        "file": path.name,
        "scenario_sha256": sha256_file(path),
        "agents": {name: spec.model_dump(exclude_defaults=True) for name, spec in scn.agents.items()},
        "agent_sha256": agent_hashes(scn),
        "env": scn.env,
        "env_kwargs": scn.env_kwargs,
        "sweep": scn.sweep,
        "protocol": scn.protocol.model_dump(),
        "episodes": result.episodes,
        "seed": scn.protocol.seed,
        "git_revision": git_revision(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "command": command,
        "rows": rows,
        "draw_details": result.draw_details,
        "checks": [{"expression": c.expression, "left": c.left, "right": c.right, "passed": c.passed} for c in result.checks],
        "passed": result.passed,
    })


def write_results(result: ScenarioResult, scenario_path: str | Path, out: str | Path | None = None, *, command: str = "") -> Path:
    """Write the results record of a run; ``out`` is a file or a folder (default: the shipped results folder)."""
    record = results_record(result, scenario_path, command=command)
    out = Path(out) if out is not None else results_dir()
    if out.suffix != ".json":
        out.mkdir(parents=True, exist_ok=True)
        out = out / (Path(record["file"]).stem + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return out


def load_results(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every results file under ``root`` (default: the shipped results folder), by scenario file stem."""
    folder = Path(root) if root is not None else results_dir()
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json")) if not p.stem.startswith("_")}


def stale_reasons(record: dict[str, Any], scenarios: Path | None = None) -> list[str]:
    """Why a results file no longer describes the scenario and agents it names (empty: it is current)."""
    folder = Path(scenarios) if scenarios is not None else shipped_scenarios_dir()
    path = folder / record["file"]
    if not path.is_file():
        return [f"scenario file {record['file']} no longer exists"]
    reasons = []
    if sha256_file(path) != record["scenario_sha256"]:
        reasons.append(f"{record['file']} changed since the run (sha256 differs)")
    try:
        now = agent_hashes(load_scenario(path))
    except Exception as e:  # noqa: BLE001 (a scenario that no longer loads is stale too)
        return reasons + [f"{record['file']} no longer loads: {e}"]
    for name, files in record.get("agent_sha256", {}).items():
        if now.get(name) != files:
            reasons.append(f"agent {name!r}: its files changed since the run (sha256 differs)")
    return reasons


# ------------------------------------------------------------------ rendering
def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def format_metric(m: dict[str, Any]) -> str:
    """``4.67 [4.60, 4.74]`` (an interval), or the value alone when it has none or it is a constant."""
    if m.get("low") is None or m.get("high") is None or m["low"] == m["high"] == m["mean"]:
        return _fmt(m["mean"])
    return f"{_fmt(m['mean'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]"


def headline(record: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The (label, metric record, row) of each metric the scenario's checks name, in order of first use."""
    from deploy_envs.scenarios.runner import parse_expectation

    seen, out = set(), []
    for c in record["checks"]:
        _, refs = parse_expectation(c["expression"])
        for agent, where, metric in refs:
            key = (agent, tuple(sorted(where.items())), metric)
            if key in seen:
                continue
            seen.add(key)
            hits = [r for r in record["rows"] if r["agent"] == agent and all(str(r["point"].get(k)) == v for k, v in where.items())]
            if len(hits) != 1 or metric not in hits[0]["metrics"]:
                continue
            m = hits[0]["metrics"][metric]
            if m.get("low") is not None and m["low"] == m["high"] == m["mean"] and metric.endswith("limit"):
                continue  # a setting (the cost limit), not a measurement
            label = agent + (f"[{', '.join(f'{k}={v}' for k, v in where.items())}]" if where else "")
            out.append((f"{label} {metric}", m, hits[0]))
    return out


def _draw_range(record: dict[str, Any], row: dict[str, Any], metric: str) -> str:
    i = record["rows"].index(row)
    for d in record.get("draw_details", []):
        if d.get("row") == i and d.get("kind") == "draws" and metric in d.get("per_value", {}):
            vals = [v for v in d["per_value"][metric] if v is not None]
            if vals:
                return f"; range {_fmt(min(vals))}-{_fmt(max(vals))} over {len(vals)} {d['argument']} draws"
    return ""


def render_row(stem: str, record: dict[str, Any], seed_check: dict[str, Any] | None = None) -> str:
    n_checks = len(record["checks"])
    passed = sum(c["passed"] for c in record["checks"])
    proto = record["protocol"]
    if proto.get("draws"):
        (k, vals), = proto["draws"].items()
        n = f"{len(vals)} draws of {k} x {record['episodes']} episodes"
    elif proto.get("strata"):
        (k, vals), = proto["strata"].items()
        n = f"{record['episodes']} episodes ({' / '.join(str(v) for v in vals)} {k} in equal parts)"
    else:
        n = f"{record['episodes']} episodes"
    figures = []
    for label, m, row in headline(record):
        figures.append(f"{label} {format_metric(m)}{_draw_range(record, row, label.split(' ')[-1])}")
    seeds = "-"
    if seed_check and stem in seed_check.get("scenarios", {}):
        s = seed_check["scenarios"][stem]
        flips = s.get("flipped", [])
        seeds = ("no check flips" if not flips else f"{len(flips)} of {len(s['checks'])} checks flip") + f" (seeds {', '.join(str(x) for x in s['seeds'])}, {s['episodes']} episodes)"
        if s.get("scenario_sha256") != record["scenario_sha256"]:
            seeds += ", on an earlier version of the scenario"
    return f"| `{record['file']}` | {passed}/{n_checks} pass | {n}, seed {record['seed']} | {'; '.join(figures)} | {seeds} |"


def render_scenarios(root: Path) -> str:
    """The generated scenario table of ``docs/scenarios.md``: one row per results file (its checks, n and the figures they name)."""
    folder = Path(root) / "deploy_envs" / "scenarios" / "results"
    records = load_results(folder)
    seed_path = folder / "_seed_check.json"
    seed_check = json.loads(seed_path.read_text(encoding="utf-8")) if seed_path.is_file() else None
    lines = [
        "Measured: every figure in this table is read from `deploy_envs/scenarios/results/<scenario>.json`"
        " (regenerate with `python -m deploy_envs.generated_sections`). Figures are means with their 95% interval"
        " in brackets: a percentile bootstrap over episodes, a Wilson interval for rates of 0/1 outcomes, or a"
        " bootstrap over independent draws where the scenario draws its condition (`protocol.draws`).",
        "",
        "| scenario | checks | n | measured: mean [95% interval] of each figure its checks name | rerun under 3 seeds |",
        "|---|---|---|---|---|",
    ]
    for stem, record in records.items():
        lines.append(render_row(stem, record, seed_check))
    return "\n".join(lines)


# ---------------------------------------------------------------------- cards
def card_evaluations(records: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per zoo agent: the evaluations its scenarios' results give (metrics with intervals and n)."""
    from deploy_envs.training.cards import evaluation

    out: dict[str, list[dict[str, Any]]] = {}
    for stem, record in records.items():
        for row in record["rows"]:
            spec = record["agents"].get(row["agent"], {})
            zoo = spec.get("zoo")
            if not zoo:
                continue
            ev = evaluation(
                {k: m["mean"] for k, m in row["metrics"].items()},
                episodes=record["episodes"], seed=record["seed"],
                env_kwargs={**record.get("env_kwargs", {}), **spec.get("env_kwargs", {}), **row["point"]},
                num_envs=record["protocol"].get("num_envs"),
                label=f"{CARD_LABEL}{stem}" + ("".join(f", {k}={v}" for k, v in row["point"].items())),
            )
            ev["intervals"] = {k: m for k, m in row["metrics"].items() if m.get("low") is not None}
            ev["results_file"] = f"deploy_envs/scenarios/results/{stem}.json"
            out.setdefault(zoo, []).append(ev)
    return out


def refresh_cards(records: dict[str, dict[str, Any]] | None = None, *, check: bool = False) -> list[str]:
    """Put each zoo agent's scenario evaluations on its card (replacing earlier ones from results).

    Returns the agents whose cards changed (``check``: would change, and nothing is written).
    """
    from deploy_envs.agent_zoo import read_card, resolve_agent_folder, write_card

    records = load_results() if records is None else records
    changed = []
    for zoo, evs in sorted(card_evaluations(records).items()):
        folder = Path(resolve_agent_folder(zoo))
        card = read_card(folder)
        kept = [ev for ev in card.evaluations if not str(ev.get("label", "")).startswith(CARD_LABEL)]
        new = kept + evs
        if json.dumps(_plain(new), sort_keys=True) != json.dumps(_plain(card.evaluations), sort_keys=True):
            changed.append(zoo)
            if not check:
                card.evaluations = _plain(new)
                write_card(folder, card)
                _rehash_shipped_card(folder)
    return changed


def _rehash_shipped_card(folder: Path) -> None:
    """After a shipped agent's card was rewritten, put the card files' new sha256 in the agents'
    manifest (only those entries: the agent's other files must still match what shipped)."""
    from deploy_envs.trust import MANIFEST_NAME, sha256_file as _sha, shipped_agents_root

    root = shipped_agents_root().resolve()
    folder = Path(folder).resolve()
    if folder.parent != root:
        return  # a user's zoo has no manifest
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    for f in folder.iterdir():
        if f.is_file() and f.name.lower() in CARD_FILES:
            data["files"][f"{folder.name}/{f.name}"] = _sha(f)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def tampered_cards(records: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Shipped agents named by the results whose card files do not match the agents' manifest (they would not load)."""
    from deploy_envs.agent_zoo import resolve_agent_folder
    from deploy_envs.trust import TamperedAgentError, is_shipped, verify_shipped_folder

    records = load_results() if records is None else records
    bad = []
    for zoo in sorted(card_evaluations(records)):
        folder = Path(resolve_agent_folder(zoo))
        if not is_shipped(folder):
            continue
        try:
            verify_shipped_folder(folder)
        except TamperedAgentError as e:
            bad.append(f"{zoo}: {e}")
    return bad


# ------------------------------------------------------------------- rescore
def rescore(name: str, folder: Path | None = None) -> dict[str, Any]:
    """Re-evaluate a results file's checks after only the scenario's ``expect`` changed.

    The stored means and intervals are kept; the checks are evaluated anew from them and the
    scenario's sha256 is updated, and so is the scenario's 3-seed check when its entry stored
    each seed's rows (:func:`rescore_seed_check`). Refused (ValueError) when anything but ``expect`` and the
    description differs from what was run (env, settings, sweep, protocol, agents): then the
    scenario must be run again.
    """
    path = resolve_scenario(name)
    folder = Path(folder) if folder is not None else results_dir()
    target = folder / f"{path.stem}.json"
    record = json.loads(target.read_text(encoding="utf-8"))
    scn = load_scenario(path)
    now = _plain({"env": scn.env, "env_kwargs": scn.env_kwargs, "sweep": scn.sweep, "protocol": scn.protocol.model_dump(),
                  "agents": {n: s.model_dump(exclude_defaults=True) for n, s in scn.agents.items()}})
    for key, value in now.items():
        if record.get(key) != value:
            raise ValueError(f"{path.name}: {key!r} differs from the recorded run ({record.get(key)!r} vs {value!r}); run the scenario again")
    if record.get("agent_sha256") != agent_hashes(scn):
        raise ValueError(f"{path.name}: the agents' files changed since the run; run the scenario again")
    result = _result_from_rows(scn, record["rows"], record["episodes"])
    previous = record["scenario_sha256"]
    record["checks"] = [{"expression": c.expression, "left": c.left, "right": c.right, "passed": c.passed} for c in result.checks]
    record["passed"] = result.passed
    record["scenario_sha256"] = sha256_file(path)
    record["rescored"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    target.write_text(json.dumps(_plain(record), indent=1) + "\n", encoding="utf-8")
    rescore_seed_check(name, previous, folder)
    return record


# ---------------------------------------------------------------- seed check
def _checked_rows(result: ScenarioResult) -> list[dict[str, Any]]:
    """The rows of a run with the metrics any of the scenario's check expressions name (means and
    intervals), so that the checks can be evaluated again when only ``expect`` changes."""
    from deploy_envs.scenarios.runner import parse_expectation

    named = {m for e in result.scenario.all_expressions() for _, _, m in parse_expectation(e)[1]}
    rows = []
    for i, row in enumerate(result.rows):
        ivs = result.intervals[i] if i < len(result.intervals) else {}
        point = {k: row[k] for k in result.scenario.sweep if k in row}
        metrics = {k: (ivs[k].to_dict() if k in ivs else {"mean": float(row[k]), "low": None, "high": None, "n": row.get("n"), "method": "none"})
                   for k in named if k in row and isinstance(row[k], (int, float)) and not isinstance(row[k], bool)}
        rows.append({"agent": row["agent"], "point": point, "n": row.get("n"), "metrics": metrics})
    return _plain(rows)


def _seed_outcomes(outcomes: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {"flipped": [e for e, runs in outcomes.items() if len({r["passed"] for r in runs}) > 1],
            "failed_under_every_seed": [e for e, runs in outcomes.items() if not any(r["passed"] for r in runs)]}


def _result_from_rows(scn: Scenario, rows: list[dict[str, Any]], episodes: int) -> ScenarioResult:
    """A :class:`ScenarioResult` rebuilt from stored rows (means and intervals), its checks evaluated."""
    from deploy_envs.metrics.intervals import Interval
    from deploy_envs.scenarios.runner import check_expectations

    result = ScenarioResult(scn, episodes=episodes)
    for row in rows:
        result.rows.append({"agent": row["agent"], **{k: m["mean"] for k, m in row["metrics"].items()}, **row["point"], "n": row["n"]})
        result.intervals.append({k: Interval.from_dict(m) for k, m in row["metrics"].items() if m.get("low") is not None})
    check_expectations(result)
    return result


def rescore_seed_check(name: str, previous_sha256: str, folder: Path | None = None) -> dict[str, Any] | None:
    """Re-evaluate a scenario's 3-seed check from its stored per-seed rows after only ``expect`` changed.

    Only an entry run on the scenario version ``previous_sha256`` (the one :func:`rescore` has
    just checked against the scenario) and that stored every metric the new checks name is
    rescored; returns the new entry, or None when it cannot be (then rerun ``seeds``).
    """
    path = resolve_scenario(name)
    target = (Path(folder) if folder is not None else results_dir()) / "_seed_check.json"
    if not target.is_file():
        return None
    data = json.loads(target.read_text(encoding="utf-8"))
    entry = data["scenarios"].get(path.stem)
    if not entry or entry.get("scenario_sha256") != previous_sha256 or not entry.get("runs"):
        return None
    scn = load_scenario(path)
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for run in entry["runs"]:
        try:
            checks = _result_from_rows(scn, run["rows"], entry["episodes"]).checks
        except ValueError:  # a check names a metric the runs did not store: the seeds must be run again
            return None
        for c in checks:
            outcomes.setdefault(c.expression, []).append({"seed": run["seed"], "passed": c.passed, "left": c.left, "right": c.right})
    entry.update(_seed_outcomes(outcomes))
    entry["checks"] = outcomes
    entry["scenario_sha256"] = sha256_file(path)
    entry["rescored"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    data["scenarios"][path.stem] = _plain(entry)
    target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return entry


def seed_check(name: str, seeds: list[int], *, episodes: int | None = None, out: Path | None = None, write: bool = True) -> dict[str, Any]:
    """Run scenario ``name`` under each seed at its stated sample size and record each check's outcome.

    A check *flips* when it passes under some seeds and fails under others. The entry (seeds,
    episodes, per-seed outcomes and values, flipped checks, the scenario's sha256) is merged
    into ``results/_seed_check.json`` (or ``out``). With ``write``, the run under the scenario's
    own seed at its own episode count also writes its results file.
    """
    from deploy_envs.scenarios.runner import run_scenario

    path = resolve_scenario(name)
    outcomes: dict[str, list[dict[str, Any]]] = {}
    runs: list[dict[str, Any]] = []
    n = None
    for seed in seeds:
        scn = load_scenario(path)
        own_seed, own_episodes = scn.protocol.seed, scn.protocol.episodes
        scn.protocol.seed = int(seed)
        n = episodes or scn.protocol.stable_episodes or scn.protocol.episodes
        result = run_scenario(scn, episodes=n, train="never")
        if write and seed == own_seed and n == own_episodes:  # the scenario's own protocol: this run is its results file
            write_results(result, path, command=f"python -m deploy_envs.scenarios.results record {path.stem}")
        for c in result.checks:
            outcomes.setdefault(c.expression, []).append({"seed": seed, "passed": c.passed, "left": c.left, "right": c.right})
        runs.append({"seed": seed, "rows": _checked_rows(result)})
    entry = {"seeds": list(seeds), "episodes": n, "scenario_sha256": sha256_file(path), **_seed_outcomes(outcomes),
             "checks": outcomes, "runs": runs,
             "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"), "git_revision": git_revision()}
    target = Path(out) if out is not None else results_dir() / "_seed_check.json"
    data = json.loads(target.read_text(encoding="utf-8")) if target.is_file() else {"scenarios": {}}
    data["scenarios"][path.stem] = _plain(entry)
    data["scenarios"] = dict(sorted(data["scenarios"].items()))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return entry


# ------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="results files of the shipped scenarios")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="run scenarios and write their results files")
    rec.add_argument("scenarios", nargs="+")
    rec.add_argument("--episodes", type=int, default=None)
    rec.add_argument("--seed", type=int, default=None)
    rec.add_argument("--out", type=Path, default=None)
    sd = sub.add_parser("seeds", help="rerun scenarios under several seeds and record whether any check flips (results/_seed_check.json)")
    sd.add_argument("scenarios", nargs="+")
    sd.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the scenario's own seed and the next two")
    sd.add_argument("--episodes", type=int, default=None, help="default: the scenario's protocol.stable_episodes")
    rs = sub.add_parser("rescore", help="re-evaluate a results file's checks (and its 3-seed check) from the stored intervals after only 'expect' changed")
    rs.add_argument("scenarios", nargs="+")
    sub.add_parser("cards", help="refresh the agents' cards from the results files")
    sub.add_parser("check", help="list stale results files and out-of-date cards (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.cmd == "record":
        from deploy_envs.scenarios.runner import run_scenario

        status = 0
        for name in args.scenarios:
            path = resolve_scenario(name)
            scn = load_scenario(path)
            if args.seed is not None:
                scn.protocol.seed = args.seed
            result = run_scenario(scn, episodes=args.episodes, train="never", progress=True)
            cmd = "python -m deploy_envs.scenarios.results record " + path.stem + (f" --episodes {args.episodes}" if args.episodes else "") + (f" --seed {args.seed}" if args.seed is not None else "")
            out = write_results(result, path, args.out, command=cmd)
            for c in result.checks:
                print(("PASS " if c.passed else "FAIL ") + f"{c.expression}   ({c.left:.4g} vs {c.right:.4g})")
            print(f"wrote {out}")
            status |= 0 if result.passed else 1
        return status
    if args.cmd == "seeds":
        status = 0
        for name in args.scenarios:
            seeds = args.seeds
            if seeds is None:  # the scenario's own seed first, so that run is also its results file
                own = load_scenario(name).protocol.seed
                seeds = [own, own + 1, own + 2]
            entry = seed_check(name, seeds, episodes=args.episodes)
            print(f"{name}: " + ("no check flips" if not entry["flipped"] else f"flipped: {entry['flipped']}") + f" (seeds {seeds}, {entry['episodes']} episodes)")
            status |= 1 if entry["flipped"] else 0
        return status
    if args.cmd == "rescore":
        for name in args.scenarios:
            rec = rescore(name)
            for c in rec["checks"]:
                print(("PASS " if c["passed"] else "FAIL ") + f"{c['expression']}   ({c['left']:.4g} vs {c['right']:.4g})")
        return 0
    if args.cmd == "cards":
        for zoo in refresh_cards():
            print(f"refreshed the card of {zoo}")
        return 0
    problems = []
    for stem, record in load_results().items():
        problems += [f"{stem}.json: {r}" for r in stale_reasons(record)]
    problems += [f"card of {z} differs from the results (run: python -m deploy_envs.scenarios.results cards)" for z in refresh_cards(check=True)]
    problems += [f"shipped agent does not match the agents' manifest: {t}" for t in tampered_cards()]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

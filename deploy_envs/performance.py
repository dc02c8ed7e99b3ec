"""The performance summary: every benchmark's ratios as rows, and the docs' table built from them.

``benchmarks/run_all.py`` runs the benchmarks, then :func:`write_summary` collects the
ratios of their results files (``benchmarks/results/<name>.json``) into
``benchmarks/results/summary.json``: one row per ratio with the env, the number of
copies, the ratio's name, its median value and range, the number of repetitions it is
the median of, the machine (described by its hardware) and the date. The Performance
table of ``docs/performance.md`` is :func:`render_performance` of that file plus the GPU results file
``benchmarks/results/gpu_cuda.json`` (a generated section, see
:mod:`deploy_envs.generated_sections`; a test fails when the two disagree).

Imports nothing heavy (json, pathlib): the generated-section check runs it in tests.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("benchmarks") / "results"
SUMMARY = RESULTS_DIR / "summary.json"
GPU_RESULTS = RESULTS_DIR / "gpu_cuda.json"

#: results file -> (benchmark script, the name of a bare ``ratio`` where its list key says nothing,
#: the env a row names when the file does not say)
SOURCES: dict[str, tuple[str, str, str]] = {
    "single.json": ("bench_single.py", "ratio", "single env"),
    "evasion.json": ("bench_evasion.py", "ratio", "deploy_envs/Evasion-v0"),
    "poisoning.json": ("bench_poisoning.py", "ratio", "deploy_envs/Poisoning-v0"),
    "backdoor.json": ("bench_backdoor.py", "ratio", "deploy_envs/Backdoor-v0"),
    "model_api.json": ("bench_model_api.py", "ratio", "deploy_envs/ModelExtraction-v0"),
    "membership.json": ("bench_membership.py", "ratio", "deploy_envs/MembershipInference-v0"),
    "safety.json": ("bench_safety.py", "native_vs_sync", "deploy_envs/SafeNavigation-v0"),
    "gridworlds.json": ("bench_gridworlds.py", "native_vs_sync", "gridworlds"),
    "fairness.json": ("bench_fairness.py", "native_vs_sync", "deploy_envs/FairLending-v0"),
    "bandits.json": ("bench_bandits.py", "ratio", "deploy_envs/Bandit-v0"),
    "shift.json": ("bench_shift.py", "ratio", "deploy_envs/DistributionShift-v0"),
    "training_control.json": ("bench_training_control.py", "ratio", "deploy_envs/TrainingControl-v0"),
    "explanation.json": ("bench_explanation.py", "ratio", "deploy_envs/Explanation-v0"),
    "trojans.json": ("bench_trojans.py", "ratio", "deploy_envs/TrojanDetection-v0"),
    "rllib.json": ("bench_rllib.py", "ratio", "deploy_envs/Evasion-v0"),
    "data_extraction.json": ("bench_data_extraction.py", "ratio", "deploy_envs/DataExtraction-v0"),
    "privacy_audit.json": ("bench_privacy_audit.py", "ratio", "deploy_envs/PrivacyAudit-v0"),
    "sb3_training.json": ("bench_sb3.py", "ratio", "sb3"),
    "allocator.json": ("bench_allocator.py", "ratio", "deploy_envs/Evasion-v0"),
}

#: list or dict keys whose entries carry a bare ``ratio``, and the ratio each names
_CONTAINER_NAMES = {
    "native_vs_sync": "native_vs_sync", "step_vs_bare": "step_vs_bare", "api_vs_bare": "api_vs_bare",
    "http_vs_in_process": "http_vs_in_process", "warm_vs_scratch": "warm_vs_scratch",
    "batched_vs_opacus": "batched_vs_opacus", "game_batched_vs_single": "game_batched_vs_single",
    "peer": "ours_vs_peer", "baseline": "now_vs_baseline", "scaling": "runners_2_vs_1",
    "overhead": "view_over_core", "pgd": "pgd_time_env_vs_direct", "training": "adapter_vs_dummy_wall_time",
    "default_vs_kept": "default_vs_kept_memory",
}
#: named ratio keys found beside the data they describe
_NAMED = ("native_over_floor", "ceiling_vs_sync", "frozen_vs_not_mean_rate", "rllib_vs_direct", "rllib_vs_env_plus_policy", "policy_loop_vs_direct", "rllib_vs_policy_loop", "step_vs_bare", "loop_vs_batched", "view_over_core", "scaling_2_vs_1", "wall_time_dummy_vs_adapter")
#: keys that qualify a row (which setting of an env it measures)
_QUALIFIERS = ("setting", "threat_model", "victim", "config", "level", "penalty", "queries_per_call", "probe_size", "runs")
#: ratios left out of the Performance table (informational, one per registered env): in summary.json only
TABLE_EXCLUDED = ("view_over_core",)


def hardware_description(machine: Any = None) -> str:
    """The machine of a results file in words, by its hardware ("a 2-core x86-64 CPU (AMD EPYC ...)")."""
    if machine is None:
        machine = {"cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "arch": platform.machine()}
    if isinstance(machine, str):  # older files: the platform string only
        return f"a {_arch(machine)} CPU"
    if machine.get("gpu"):
        host = f"{machine['cpu_count']}-core host" if machine.get("cpu_count") else "host"
        return f"one {machine['gpu']} GPU ({host})"
    cores = machine.get("cpu_count")
    arch = machine.get("arch") or _arch(machine.get("platform", ""))
    text = f"a {cores}-core {arch} CPU" if cores else f"a {arch} CPU"
    if machine.get("cpu_model"):
        text += f" ({machine['cpu_model']})"
    return text


def _arch(platform_string: str) -> str:
    return "x86-64" if "x86_64" in platform_string or not platform_string else platform_string.rsplit("-", 3)[-3] if platform_string.count("-") >= 3 else platform_string


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def extract_rows(data: Any, file: str, default: str = "ratio", default_env: str | None = None) -> list[dict[str, Any]]:
    """Every ratio in a results file's JSON as rows (env, copies, ratio, value, range, runs, qualifiers)."""
    top_env = data.get("env") if isinstance(data, dict) and isinstance(data.get("env"), str) else default_env
    top_reps = None
    if isinstance(data, dict):
        settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
        top_reps = data.get("reps") or settings.get("reps")
    rows: list[dict[str, Any]] = []

    def walk(node: Any, key: str | None, ctx: dict[str, Any]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, key, ctx)
            return
        if not isinstance(node, dict):
            return
        ctx = dict(ctx)
        env = node.get("env") if isinstance(node.get("env"), str) else node.get("env_id") if isinstance(node.get("env_id"), str) else None
        if env:
            ctx["env"] = env
        for k in ("num_envs", "copies", "num_envs_per_env_runner", "num_envs_per_runner"):
            if _number(node.get(k)):
                ctx["copies"] = int(node[k])
                break
        for q in _QUALIFIERS:
            v = node.get(q)
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                ctx.setdefault("qualifiers", {})
                ctx["qualifiers"] = {**ctx["qualifiers"], q: v}
        if _number(node.get("reps")):
            ctx["runs"] = int(node["reps"])
        if _number(node.get("ratio")):
            name = _CONTAINER_NAMES.get(key or "", default if key in (None, "rows") else key)
            rows.append(_row(ctx, name, node["ratio"], node.get("ratio_range"), node.get("ratios")))
        for named in _NAMED:
            if _number(node.get(named)):
                rows.append(_row(ctx, named, node[named], node.get(f"{named}_range"), None))
        for k, v in node.items():
            if isinstance(v, (dict, list)) and k not in ("machine", "kwargs", "settings", "targets", "env_kwargs"):
                # a container's "rows" carry its name (``{"baseline": {"rows": [...]}}``: now_vs_baseline)
                walk(v, key if k == "rows" and key is not None else k, ctx)

    def _row(ctx: dict[str, Any], name: str, value: float, rng: Any, ratios: Any) -> dict[str, Any]:
        runs = len(ratios) if isinstance(ratios, list) and ratios else ctx.get("runs", top_reps)
        row = {"env": ctx.get("env", top_env or file.removesuffix(".json")), "copies": ctx.get("copies"), "ratio": name,
               "value": float(value), "range": [float(x) for x in rng] if isinstance(rng, list) and len(rng) == 2 else None,
               "runs": runs, "source": f"benchmarks/results/{file}"}
        if ctx.get("qualifiers"):
            row["setting"] = ", ".join(f"{k}={v}" for k, v in ctx["qualifiers"].items())
        return row

    walk(data, None, {})
    return rows


def _file_date(path: Path, root: Path) -> str:
    """The date of a results file: its last commit when unchanged since, else its modification day."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        if not dirty:
            out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
            if out:
                return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()


def build_summary(root: Path, rerun: dict[str, str] | None = None) -> dict[str, Any]:
    """Rows of every results file in :data:`SOURCES` under ``root``; ``rerun`` maps the files
    just measured to their date (the others keep their committed date)."""
    root = Path(root)
    rerun = rerun or {}
    rows = []
    files = []
    for file, spec in SOURCES.items():
        files.append((file, spec))
        # repeated runs of a script (benchmarks/results/<name>_run<i>.json) are rows of their own
        stem = file.removesuffix(".json")
        files += [(p.name, spec) for p in sorted((root / RESULTS_DIR).glob(f"{stem}_run*.json"))]
    for file, (script, default, default_env) in files:
        path = root / RESULTS_DIR / file
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        machine = hardware_description(data.get("machine") if isinstance(data, dict) and data.get("machine") else data.get("machine_info") if isinstance(data, dict) else None)
        load = None
        if isinstance(data, dict) and isinstance(data.get("machine"), dict):
            m = data["machine"]
            load = m.get("loadavg_start") or m.get("loadavg")
        date = rerun.get(file) or _file_date(path, root)
        for row in extract_rows(data, file, default, default_env):
            row.update({"machine": machine, "date": date, "script": f"benchmarks/{script}"})
            if "_run" in file:
                row["run"] = int(file.removesuffix(".json").rsplit("_run", 1)[1])
            if load:
                row["loadavg_at_start"] = [round(float(x), 2) for x in load]
            rows.append(row)
    return {"rows": rows}


def write_summary(root: Path, rerun: dict[str, str] | None = None) -> Path:
    path = Path(root) / SUMMARY
    path.write_text(json.dumps(build_summary(root, rerun), indent=2) + "\n")
    return path


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _gpu_rows(root: Path) -> list[dict[str, Any]]:
    path = Path(root) / GPU_RESULTS
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    machine = hardware_description(data.get("machine"))
    date = _file_date(path, Path(root))
    reps = (data.get("settings") or {}).get("reps")
    rows = []
    for env in data.get("envs", []):
        if not env.get("measured"):
            rows.append({"env": env["env"], "copies": None, "ratio": "native_vs_sync", "value": None, "range": None, "runs": None,
                         "machine": machine, "date": date, "note": env.get("reason") or "not measured"})
            continue
        for r in env.get("rows", []):
            if _number(r.get("ratio")):
                rows.append({"env": env["env"], "copies": r.get("num_envs"), "ratio": "native_vs_sync", "value": float(r["ratio"]),
                             "range": r.get("ratio_range"), "runs": r.get("reps", reps), "machine": machine, "date": date})
    return rows


def render_performance(root: Path) -> str:
    """The Performance table of ``docs/performance.md``: summary.json's rows and the GPU results, one line per ratio."""
    root = Path(root)
    path = root / SUMMARY
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if r["ratio"] not in TABLE_EXCLUDED] + _gpu_rows(root)
    lines = [
        "| env | copies | ratio | value (range) | runs | machine | date |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        env = str(r["env"]).removeprefix("deploy_envs/")
        if r.get("setting"):
            env += f" ({r['setting']})"
        if r.get("run"):
            env += f", run {r['run']}"
        if r.get("value") is None:
            value = r.get("note", "not measured")
        else:
            value = f"{_fmt(r['value'])}x"
            if r.get("range"):
                lo, hi = r["range"]
                value += f" ({_fmt(lo)}-{_fmt(hi)})"
        copies = "" if r.get("copies") is None else f"{r['copies']:,}"
        runs = "" if r.get("runs") is None else str(r["runs"])
        lines.append(f"| {env} | {copies} | {r['ratio']} | {value} | {runs} | {r['machine']} | {r['date']} |")
    return "\n".join(lines)

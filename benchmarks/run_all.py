"""Run every benchmark and collect its ratios into ``benchmarks/results/summary.json``.

Run from the repository root::

    python benchmarks/run_all.py                  # every CPU benchmark (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick          # every benchmark's smoke run (each script's --quick), into results/quick/
    python benchmarks/run_all.py --device cuda    # the GPU benchmark (bench_gpu.py) on that device
    python benchmarks/run_all.py --only bench_single.py bench_fairness.py   # some of them
    python benchmarks/run_all.py --summary-only   # rebuild summary.json and the docs' Performance table from the results files

Each script runs in its own process and writes its results file; a script that fails is
reported and the others go on. Then the summary is rebuilt from every results file (those
not re-run keep their committed numbers and date) and the Performance table of
``docs/performance.md``, a generated section (``python -m deploy_envs.generated_sections``), is rewritten from it.
Each summary row: env, copies, ratio name, value (median over the repetitions within one
run), range, runs (repetitions), the machine by its hardware, date, and the load average
at the start of the run where the script records it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy_envs.performance import SOURCES, write_summary  # noqa: E402

#: CPU scripts, in order, with the results files they write
CPU_SCRIPTS: dict[str, list[str]] = {}
for _file, (_script, _, _) in SOURCES.items():
    CPU_SCRIPTS.setdefault(_script, []).append(_file)
#: scripts that take --device (the torch cores with a device= argument)
DEVICE_SCRIPTS = ("bench_gpu.py",)


def run(script: str, args: list[str]) -> tuple[int, float]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"$ {' '.join(cmd[1:])}   (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    return rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's --quick smoke run")
    parser.add_argument("--device", default="cpu", help="cpu (default: every CPU benchmark) or a torch device such as cuda (the GPU benchmark)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these scripts (names as in benchmarks/)")
    parser.add_argument("--summary-only", action="store_true", help="run nothing; rebuild summary.json and the docs' Performance table")
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    if args.device == "cpu":
        scripts = list(CPU_SCRIPTS)
    else:
        scripts = list(DEVICE_SCRIPTS)
    if args.only is not None:
        unknown = [s for s in args.only if s not in CPU_SCRIPTS and s not in DEVICE_SCRIPTS]
        if unknown:
            parser.error(f"--only names unknown scripts {unknown}; known: {sorted({*CPU_SCRIPTS, *DEVICE_SCRIPTS})}")
        scripts = [s for s in scripts if s in args.only] + [s for s in args.only if s not in scripts and (args.device == "cpu") == (s not in DEVICE_SCRIPTS)]
    rerun: dict[str, str] = {}
    failed = []
    if args.quick and not args.summary_only:
        # a smoke run must not replace the committed measurements: its results files go to
        # benchmarks/results/quick/ and the committed ones are put back; nothing is summarised
        results = ROOT / "benchmarks" / "results"
        before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
        try:
            for script in scripts:
                extra = ["--quick"] + (["--device", args.device] if script in DEVICE_SCRIPTS else [])
                rc, seconds = run(script, extra)
                print(f"  {script}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
                if rc != 0:
                    failed.append(script)
        finally:
            quick_dir = results / "quick"
            quick_dir.mkdir(exist_ok=True)
            for p in results.iterdir():
                if p.is_file() and before.get(p.name) != p.read_bytes():
                    (quick_dir / p.name).write_bytes(p.read_bytes())
                    if p.name in before:
                        p.write_bytes(before[p.name])
                    else:
                        p.unlink()
        print(f"smoke results in {quick_dir.relative_to(ROOT)}/ (the committed results and summary are unchanged)")
        if failed:
            print(f"failed: {failed}")
        return 1 if failed else 0
    if not args.summary_only:
        for script in scripts:
            extra = ["--quick"] if args.quick else []
            if script in DEVICE_SCRIPTS:
                extra += ["--device", args.device]
            rc, seconds = run(script, extra)
            print(f"  {script}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f} s", flush=True)
            if rc == 0:
                for f in CPU_SCRIPTS.get(script, []):
                    rerun[f] = today
            else:
                failed.append(script)
    path = write_summary(ROOT, rerun)
    print(f"wrote {path.relative_to(ROOT)}")
    from deploy_envs.generated_sections import regenerate

    page = ROOT / "docs" / "performance.md"
    stale = regenerate(page, root=ROOT)
    print(f"{page.relative_to(ROOT)}: " + (f"regenerated {stale}" if stale else "up to date"))
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

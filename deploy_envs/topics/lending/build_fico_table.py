"""Re-derive the compact FICO table embedded in :mod:`deploy_envs.topics.lending.fico`.

The raw tables (US Federal Reserve Board 2007 report to Congress on credit scoring,
TransUnion TransRisk scores of 2003, as used by Hardt et al. 2016 and Liu et al. 2018)
are three CSV files: ``totals.csv``, ``transrisk_cdf_by_race_ssa.csv`` and
``transrisk_performance_by_race_ssa.csv``. This script reads them, checks them
(same score index in both tables, a non-decreasing CDF ending at 100, percentages in
[0, 100]) and writes the block between the ``BEGIN GENERATED`` / ``END GENERATED``
markers of ``fico.py``: one row per TransRisk score with the four groups' cumulative
percentages and default percentages, exactly as in the source (two decimals), plus
the group totals and the sha256 of each source file.

Usage::

    python -m deploy_envs.topics.lending.build_fico_table /path/to/fico          # rewrite fico.py
    python -m deploy_envs.topics.lending.build_fico_table /path/to/fico --check  # exit 1 if stale
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

GROUP_COLUMNS = {"Non- Hispanic white": "White", "Black": "Black", "Hispanic": "Hispanic", "Asian": "Asian"}
FILES = ("totals.csv", "transrisk_cdf_by_race_ssa.csv", "transrisk_performance_by_race_ssa.csv")
TARGET = Path(__file__).with_name("fico.py")
BEGIN, END = "# BEGIN GENERATED (build_fico_table.py)", "# END GENERATED"


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    return rows[0], rows[1:]


def derive(raw_dir: str | Path) -> str:
    """The generated block (as Python source) from the raw CSV files in ``raw_dir``."""
    raw_dir = Path(raw_dir)
    missing = [f for f in FILES if not (raw_dir / f).exists()]
    if missing:
        raise ValueError(f"raw_dir={str(raw_dir)!r} lacks {', '.join(missing)}")
    head_t, rows_t = _read(raw_dir / "totals.csv")
    head_c, rows_c = _read(raw_dir / "transrisk_cdf_by_race_ssa.csv")
    head_p, rows_p = _read(raw_dir / "transrisk_performance_by_race_ssa.csv")
    cols = list(GROUP_COLUMNS)
    for name, head in (("totals.csv", head_t), ("cdf", head_c), ("performance", head_p)):
        if head[1:] != cols:
            raise ValueError(f"{name}: columns {head[1:]} differ from the expected {cols}")
    if [r[0] for r in rows_c] != [r[0] for r in rows_p]:
        raise ValueError("the cdf and performance tables have different score columns")
    ssa = [r for r in rows_t if r[0] == "SSA"]
    if len(ssa) != 1:
        raise ValueError("totals.csv has no single 'SSA' row")
    totals = [int(v) for v in ssa[0][1:]]
    lines = []
    prev = [-1.0] * 4
    for rc, rp in zip(rows_c, rows_p):
        cdf = [float(v) for v in rc[1:]]
        perf = [float(v) for v in rp[1:]]
        if any(c < p for c, p in zip(cdf, prev)) or any(not 0 <= v <= 100 for v in cdf + perf):
            raise ValueError(f"score {rc[0]}: cdf must be non-decreasing and all values percentages")
        prev = cdf
        lines.append(" ".join([rc[0], *rc[1:], *rp[1:]]))
    if prev != [100.0] * 4:
        raise ValueError("the cdf does not end at 100 for every group")
    sha = {f: hashlib.sha256((raw_dir / f).read_bytes()).hexdigest() for f in FILES}
    out = [BEGIN]
    out.append(f"GROUPS = {tuple(GROUP_COLUMNS.values())!r}")
    out.append(f"TOTALS = {tuple(totals)!r}  # people per group in the sample (row SSA of totals.csv)")
    out.append("SOURCE_SHA256 = {")
    out += [f"    {f!r}: {h!r}," for f, h in sha.items()]
    out.append("}")
    out.append("# TransRisk score, cumulative % at or below it (White Black Hispanic Asian),")
    out.append("# % of those at that score who defaulted (White Black Hispanic Asian)")
    out.append('_TABLE = """')
    out += lines
    out.append('"""')
    out.append(END)
    return "\n".join(out)


def write(raw_dir: str | Path, target: Path = TARGET, check: bool = False) -> bool:
    """Replace the generated block in ``target``; with ``check``, only report whether it is current."""
    text = target.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + derive(raw_dir) + text[stop:]
    if check:
        return new == text
    target.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw_dir", help="folder with the three FICO CSV files")
    p.add_argument("--check", action="store_true", help="exit 1 if fico.py is not what the CSVs give")
    a = p.parse_args(argv)
    ok = write(a.raw_dir, check=a.check)
    print(("up to date" if ok else "STALE: rerun without --check") if a.check else f"wrote {TARGET}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

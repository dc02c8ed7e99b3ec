"""``benchmarks/run_all.py``: a smoke run (--quick) never replaces the committed measurements."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_all_in(tmp_path: Path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "run_all.py", tmp_path / "benchmarks" / "run_all.py")
    spec = importlib.util.spec_from_file_location("run_all_copy", tmp_path / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, tmp_path / "benchmarks" / "results"


def test_quick_run_writes_its_results_aside_and_restores_the_committed_ones(tmp_path, monkeypatch):
    mod, results = _run_all_in(tmp_path)
    committed = results / "single.json"
    committed.write_text('{"committed": true}')
    calls = []

    def fake_run(script, args):
        calls.append((script, args))
        committed.write_text('{"quick": true}')  # what a script's --quick run writes
        (results / "new.json").write_text('{"quick": true}')
        return 0, 0.1

    monkeypatch.setattr(mod, "run", fake_run)
    assert mod.main(["--quick", "--only", "bench_single.py"]) == 0
    assert calls == [("bench_single.py", ["--quick"])]
    assert committed.read_text() == '{"committed": true}'
    assert not (results / "new.json").exists() and not (results / "summary.json").exists()
    assert json.loads((results / "quick" / "single.json").read_text()) == {"quick": True}
    assert json.loads((results / "quick" / "new.json").read_text()) == {"quick": True}


def test_quick_run_restores_the_committed_results_when_a_script_fails(tmp_path, monkeypatch):
    mod, results = _run_all_in(tmp_path)
    committed = results / "single.json"
    committed.write_text('{"committed": true}')

    def failing_run(script, args):
        committed.write_text("partial")
        return 1, 0.1

    monkeypatch.setattr(mod, "run", failing_run)
    assert mod.main(["--quick", "--only", "bench_single.py"]) == 1
    assert committed.read_text() == '{"committed": true}'

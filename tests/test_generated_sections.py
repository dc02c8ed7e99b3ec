"""The generated-section machinery: markers, replacement and the check mode."""

import pytest

from deploy_envs import generated_sections as gs


def test_replace_and_read_round_trip():
    text = "intro\n<!-- generated:t -->\nold\n<!-- /generated:t -->\nend\n"
    new = gs.replace_section(text, "t", "| a |\n|---|")
    assert gs.read_section(new, "t") == "| a |\n|---|"
    assert new.startswith("intro\n") and new.endswith("end\n")
    assert gs.section_names(new) == ["t"]


def test_missing_markers_name_the_section():
    with pytest.raises(KeyError, match="'nope'"):
        gs.read_section("no markers", "nope")


def test_check_reports_stale_section_and_write_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setitem(gs.SECTIONS, "demo", "tests.test_generated_sections:_demo_body")
    f = tmp_path / "README.md"
    f.write_text("<!-- generated:demo -->\nstale\n<!-- /generated:demo -->\n")
    assert gs.regenerate(f, check=True) == ["demo"]
    assert "stale" in f.read_text()  # check mode does not write
    assert gs.regenerate(f) == ["demo"]
    assert gs.regenerate(f, check=True) == []
    assert gs.read_section(f.read_text(), "demo") == "fresh body"


def _demo_body(root):
    return "fresh body"


def test_docs_performance_table_matches_the_benchmark_summary():
    """The Performance page's section is exactly what benchmarks/results/summary.json (and gpu_cuda.json) give."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "performance" in gs.section_names(text)
    assert gs.renderer("performance")(root).strip() == gs.read_section(text, "performance").strip()


def test_every_section_lives_in_one_listed_docs_page_and_the_check_passes(capsys):
    """Each generated section is in exactly one file of gs.FILES (the README has none), and `--check` finds nothing stale."""
    root = gs.REPO_ROOT
    assert gs.misplaced_sections() == []
    where = {name: [f for f in gs.FILES if name in gs.section_names((root / f).read_text(encoding="utf-8"))] for name in gs.SECTIONS}
    assert where == {"performance": ["docs/performance.md"], "scenarios": ["docs/scenarios.md"]}
    assert gs.section_names((root / "README.md").read_text(encoding="utf-8")) == []
    assert gs.main(["--check"]) == 0, capsys.readouterr().out


def test_a_lost_marker_or_a_missing_file_fails_the_check(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("<!-- generated:performance -->\nx\n<!-- /generated:performance -->\n")
    monkeypatch.setattr(gs, "FILES", ("docs/a.md", "docs/b.md"))
    problems = gs.misplaced_sections(tmp_path)
    assert "docs/b.md is missing" in problems
    assert any("'scenarios' is in 0 files" in p for p in problems), problems
    (tmp_path / "docs" / "b.md").write_text("<!-- generated:scenarios -->\n<!-- /generated:scenarios -->\n<!-- generated:performance -->\n<!-- /generated:performance -->\n")
    problems = gs.misplaced_sections(tmp_path)
    assert problems == ["section 'performance' is in 2 files (docs/a.md, docs/b.md) instead of one of docs/a.md, docs/b.md"], problems


def test_regenerate_finds_the_repository_root_of_a_docs_page(tmp_path, monkeypatch):
    """A page under docs/ is rendered from the checkout's root (the folder with pyproject.toml), not from docs/."""
    seen = []
    monkeypatch.setitem(gs.SECTIONS, "demo", "tests.test_generated_sections:_demo_body")
    monkeypatch.setattr(gs, "renderer", lambda name: (lambda root: seen.append(root) or "fresh body"))
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("<!-- generated:demo -->\nstale\n<!-- /generated:demo -->\n")
    assert gs.regenerate(page) == ["demo"]
    assert seen == [tmp_path.resolve()]


def test_performance_rows_come_from_the_results_files(tmp_path):
    """A ratio in a results file becomes a summary row, and the rendered table shows it."""
    import json

    from deploy_envs import performance as perf

    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    (res / "fairness.json").write_text(json.dumps({"num_envs": 256, "ratio": 26.5, "ratio_range": [25.1, 27.0], "reps": 7,
                                                   "machine": {"cpu_count": 2, "platform": "Linux-x86_64", "loadavg": [0.5, 0.4, 0.3]}}))
    perf.write_summary(tmp_path, {"fairness.json": "2026-01-02"})
    rows = json.loads((res / "summary.json").read_text())["rows"]
    assert rows == [{"env": "deploy_envs/FairLending-v0", "copies": 256, "ratio": "native_vs_sync", "value": 26.5, "range": [25.1, 27.0],
                     "runs": 7, "source": "benchmarks/results/fairness.json", "machine": "a 2-core x86-64 CPU", "date": "2026-01-02",
                     "script": "benchmarks/bench_fairness.py", "loadavg_at_start": [0.5, 0.4, 0.3]}]
    table = perf.render_performance(tmp_path)
    assert "| FairLending-v0 | 256 | native_vs_sync | 26.5x (25.1-27.0) | 7 | a 2-core x86-64 CPU | 2026-01-02 |" in table

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

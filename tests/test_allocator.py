"""deploy_envs.allocator: the opt-in malloc setting refuses bad thresholds and sets glibc's where it can."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from deploy_envs import allocator


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"mmap_threshold": 0}, "mmap_threshold"), ({"mmap_threshold": allocator.MAX_MMAP_THRESHOLD + 1}, "mmap_threshold"),
     ({"mmap_threshold": 1.5e6}, "mmap_threshold"), ({"trim_threshold": -1}, "trim_threshold"), ({"trim_threshold": True}, "trim_threshold")],
)
def test_bad_thresholds_are_refused_before_anything_changes(kwargs, name, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_mallopt", lambda: calls.append(1) or (lambda *a: 1))
    with pytest.raises(ValueError, match=rf"^{name}=.* (must be|is out of range)"):
        allocator.keep_freed_memory(**kwargs)
    assert not calls  # the C library was not even looked up


def test_without_mallopt_nothing_changes_and_it_says_so(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert allocator.keep_freed_memory() is False


def test_both_thresholds_are_passed_to_mallopt(monkeypatch):
    seen = []
    monkeypatch.setattr(allocator, "_mallopt", lambda: lambda param, value: seen.append((param, value)) or 1)
    assert allocator.keep_freed_memory(mmap_threshold=4 << 20, trim_threshold=64 << 20) is True
    assert seen == [(allocator.M_MMAP_THRESHOLD, 4 << 20), (allocator.M_TRIM_THRESHOLD, 64 << 20)]
    seen.clear()
    monkeypatch.setattr(allocator, "_mallopt", lambda: lambda param, value: 0)  # glibc refused a value
    assert allocator.keep_freed_memory() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_setting_in_a_fresh_process():
    # a child process: the setting is global and cannot be undone in the test process
    out = subprocess.run([sys.executable, "-c", "from deploy_envs.allocator import keep_freed_memory as k; print(k(), k(1 << 20, 1 << 24))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]

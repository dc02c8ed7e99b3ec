"""Shared fixtures: the catalog of registered envs and games drives the generic tests."""
from __future__ import annotations

import os

import pytest
import torch

import deploy_envs  # noqa: F401  (registers everything)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache (or the network) from a test."""
    monkeypatch.setenv("DEPLOY_ENVS_CACHE", str(tmp_path_factory.mktemp("cache")))

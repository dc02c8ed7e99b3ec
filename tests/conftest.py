"""Shared fixtures: the catalog of registered envs and games drives the generic tests."""
from __future__ import annotations

import pytest
import torch

import deploy_envs  # noqa: F401  (registers everything)

# batch-1 steps are dominated by thread start-up cost; one thread is faster for tests
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache (or the network) from a test."""
    monkeypatch.setenv("DEPLOY_ENVS_CACHE", str(tmp_path_factory.mktemp("cache")))

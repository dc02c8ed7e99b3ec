"""Shared fixtures: the catalog of registered envs and games drives the generic tests."""
from __future__ import annotations

import os

# batch-1 steps are dominated by thread start-up cost; one thread is faster for tests. OpenMP's thread count
# is a per-thread setting that torch.set_num_threads sets for the calling thread only: the variable gives
# every other thread (a served model API's worker, for one) the same single thread, so the same input gets
# bit-identical answers on every thread
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import deploy_envs  # noqa: E402, F401  (registers everything)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache (or the network) from a test."""
    monkeypatch.setenv("DEPLOY_ENVS_CACHE", str(tmp_path_factory.mktemp("cache")))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``rllib`` need the rllib extra; without Ray they are reported as skipped, naming the extra.

    CI runs them in a venv of their own with ``pip install -e ".[test,rllib]"`` (Ray pins gymnasium 1.2.2).
    """
    from deploy_envs.core.extras import available, install_command

    if available("rllib"):
        return
    skip = pytest.mark.skip(reason=f"needs the rllib extra: {install_command('rllib')} (run: python -m pytest -m rllib)")
    for item in items:
        if "rllib" in item.keywords:
            item.add_marker(skip)

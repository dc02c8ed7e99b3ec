"""The model zoo: manifest, hash verification, refusal and retraining of corrupted weights."""
from __future__ import annotations

import shutil

import pytest
import torch

from deploy_envs.data import load_dataset
from deploy_envs.metrics.robustness import accuracy
from deploy_envs.models import zoo


def test_shipped_models_verify_and_match_their_cards():
    ds = load_dataset("digits")
    entries = {e.name: e for e in zoo.list_models()}
    assert {"digits-standard", "digits-madry"} <= set(entries)
    for name in ("digits-standard", "digits-madry"):
        model = zoo.load_model(name)
        acc = accuracy(model, ds.x_test, ds.y_test)
        assert abs(acc - entries[name].metrics["clean_accuracy"]) < 1e-4  # card rounds to 4 places
        assert (zoo.WEIGHTS_DIR / entries[name].file).stat().st_size < 5_000_000


def test_madry_model_keeps_clean_accuracy_within_two_points():
    m = {e.name: e.metrics for e in zoo.list_models()}
    assert m["digits-standard"]["clean_accuracy"] - m["digits-madry"]["clean_accuracy"] <= 0.02
    # and is far more robust at every evaluated radius up to 0.3
    for eps in ("0.1", "0.2", "0.3"):
        assert m["digits-madry"]["robust_accuracy"][f"linf@{eps}"] >= m["digits-standard"]["robust_accuracy"][f"linf@{eps}"] + 0.2


@pytest.fixture
def zoo_copy(tmp_path):
    dest = tmp_path / "weights"
    shutil.copytree(zoo.WEIGHTS_DIR, dest)
    return dest / "manifest.json"


def test_corrupted_weights_are_refused(zoo_copy):
    f = zoo_copy.parent / "digits-standard.pt"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooIntegrityError, match="corrupted: sha256"):
        zoo.load_model("digits-standard", manifest_path=zoo_copy)


def test_missing_weights_are_refused(zoo_copy):
    (zoo_copy.parent / "digits-madry.pt").unlink()
    with pytest.raises(zoo.ZooIntegrityError, match="missing"):
        zoo.load_model("digits-madry", manifest_path=zoo_copy)


def test_corrupted_weights_are_retrained_when_asked(zoo_copy, monkeypatch):
    from deploy_envs.models import training

    # a 1-epoch recipe keeps the test fast; the path is the same as the real one
    monkeypatch.setitem(zoo.RECIPES, "digits-standard", training.Recipe(
        epochs=3, eval_epsilons=(0.1,), eval_kwargs={"apgd_steps": 5, "restarts": 1, "targets": 1, "square_queries": 5}
    ))
    (zoo_copy.parent / "digits-standard.pt").write_bytes(b"garbage")
    model = zoo.load_model("digits-standard", manifest_path=zoo_copy, on_corrupt="retrain")
    assert isinstance(model, torch.nn.Module)
    assert accuracy(model, load_dataset("digits").x_test, load_dataset("digits").y_test) > 0.5
    cached = zoo._cache_path("digits-standard")
    assert cached.exists() and cached.with_suffix(".sha256").exists()
    # the shipped file is still corrupt: the next load refuses it; the cache copy, vouched for
    # only by its own sidecar, never takes the manifest's place
    with pytest.raises(zoo.ZooIntegrityError, match="corrupted"):
        zoo.load_model("digits-standard", manifest_path=zoo_copy)


def test_unknown_model_and_bad_option():
    with pytest.raises(ValueError, match="model='nope'"):
        zoo.load_model("nope")
    with pytest.raises(ValueError, match="on_corrupt"):
        zoo.load_model("digits-standard", on_corrupt="ignore")


def test_fast_max_pool_is_the_max_pool():
    """MaxPool2x2 gives nn.MaxPool2d(2)'s numbers outside autograd (even and odd sides) and its gradients inside."""
    import torch
    from torch import nn

    from deploy_envs.models.architectures import MaxPool2x2, SmallCNN

    torch.manual_seed(0)
    ref, fast = nn.MaxPool2d(2), MaxPool2x2()
    for shape in [(5, 3, 8, 8), (2, 4, 7, 9), (1, 1, 2, 2), (3, 2, 28, 28)]:
        x = torch.randn(*shape)
        x[0, 0, 0, :2] = float("nan")  # a NaN in a window propagates, as in the pool
        with torch.no_grad():
            assert torch.equal(fast(x).nan_to_num(7.0), ref(x).nan_to_num(7.0)), shape
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    (fast(x) ** 2).sum().backward()
    g_fast = x.grad.clone()
    x.grad = None
    (ref(x) ** 2).sum().backward()
    assert torch.equal(g_fast, x.grad)
    assert isinstance(SmallCNN().features[-1], MaxPool2x2) and isinstance(SmallCNN().features[-1], nn.MaxPool2d)

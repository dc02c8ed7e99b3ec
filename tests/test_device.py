"""The ``device=`` plumbing of the torch cores, checked on a CPU.

A CPU has one device, so a tensor left on the host cannot be told from one on the
accelerator by its ``.device``. :class:`DeviceTracker` tells them apart anyway: it
runs the core under a :class:`torch.overrides.TorchFunctionMode` that tags every
tensor it sees made. A tensor is a *device* tensor when it was created with
``device=`` given or moved with ``.to(device)``, or computed from a device tensor; a
*host* tensor when it was made from data (``torch.as_tensor``, ``from_numpy``,
``zeros``, ...) without a device, or brought back with ``.cpu()``. An op that mixes
a device tensor with a host tensor of more than one element (a "cuda and cpu"
error on a GPU), or ``.numpy()`` of a device tensor (which fails on a GPU), is
recorded as a violation; every ``.cpu()`` of a device tensor is recorded as a
host transfer with its size. So a core built and stepped with ``device="cpu"``
under the tracker shows what it would do on an accelerator.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from deploy_envs.core.validation import check_device
from deploy_envs.topics.backdoor.backdoor import BackdoorCore
from deploy_envs.topics.poisoning.poisoning import PoisoningCore
from deploy_envs.topics.trojans.trojan_detection import TrojanDetectionCore
from deploy_envs.topics.training_control.training_control import TrainingControlCore

TAG = "_deploy_envs_device_tag"
DEVICE, HOST = "device", "host"
# functions that make a tensor from data or from nothing: host unless given a device
_FACTORIES = {
    torch.as_tensor, torch.tensor, torch.from_numpy, torch.zeros, torch.ones, torch.empty, torch.full,
    torch.arange, torch.eye, torch.rand, torch.randn, torch.randint, torch.linspace,
}
# functions where a host index tensor next to a device tensor is legal (torch moves the index)
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
# host -> device copies, legal
_COPIES = {torch.Tensor.copy_}


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _tag(t: torch.Tensor):
    return getattr(t, TAG, None)


def _set_tag(out, tag) -> None:
    if tag is None:
        return
    for t in _tensors(out):
        try:
            setattr(t, TAG, tag)
        except (AttributeError, RuntimeError):  # pragma: no cover - tensors that refuse attributes
            pass


class DeviceTracker(TorchFunctionMode):
    """Records device/host mixing and host transfers of the torch calls made while active; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[str] = []
        self.transfers: list[int] = []  # bytes brought back to the host by each .cpu()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))
        if func is torch.Tensor.numpy and _tag(args[0]) == DEVICE:
            self.violations.append("numpy() of a device tensor (needs .cpu() first)")
        out = func(*args, **kwargs)
        if func in (torch.Tensor.cpu, torch.Tensor.to) and out is args[0]:
            out = out.view_as(out)  # on a CPU the move returns its input: tag a view, not the source
        if func is torch.Tensor.cpu:
            if _tag(args[0]) == DEVICE:
                self.transfers.append(args[0].numel() * args[0].element_size())
            _set_tag(out, HOST)
            return out
        if func is torch.Tensor.to:
            moves = "device" in kwargs or any(isinstance(a, (str, torch.device)) for a in args[1:])
            _set_tag(out, DEVICE if moves else _tag(args[0]))
            return out
        if func in _FACTORIES:
            if kwargs.get("device") is not None:
                _set_tag(out, DEVICE)
            else:
                src = [_tag(t) for t in _tensors(args[:1])]
                _set_tag(out, src[0] if src and src[0] else HOST)
            return out
        checked = list(_tensors((args[0], args[2:]) if func in _INDEXING else (args, kwargs)))
        tags = {_tag(t) for t in checked if t.dim() > 0} - {None}
        if len(tags) > 1 and func not in _COPIES:
            shapes = [tuple(t.shape) for t in checked if _tag(t) == HOST and t.dim() > 0]
            self.violations.append(f"{name} mixes device tensors with host tensors of shapes {shapes}")
        all_tags = {_tag(t) for t in _tensors((args, kwargs))} - {None}
        out_tag = DEVICE if DEVICE in all_tags or kwargs.get("device") is not None else (HOST if all_tags else None)
        _set_tag(out, out_tag)
        return out


def _attribute_tensors(obj, prefix: str, seen: set, depth: int = 0):
    """(name, tensor) of every tensor reachable through the attributes of ``obj`` (lists, dicts, objects)."""
    if id(obj) in seen or depth > 4:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
        return
    if isinstance(obj, (list, tuple)):
        for i, o in enumerate(obj):
            yield from _attribute_tensors(o, f"{prefix}[{i}]", seen, depth + 1)
        return
    if isinstance(obj, dict):
        for k, o in obj.items():
            yield from _attribute_tensors(o, f"{prefix}[{k!r}]", seen, depth + 1)
        return
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("deploy_envs"):
        for k, o in vars(obj).items():
            if k == "rngs":
                continue
            yield from _attribute_tensors(o, f"{prefix}.{k}", seen, depth + 1)


# the fitted-once references that are computed on the CPU on purpose (the same on every device),
# and TrojanDetection's loaded population (shared by its cores; each copies the weights to its device)
_HOST_BY_DESIGN = ("_host", "theta_init", "core.pop.")

CASES = {
    "poisoning-logistic": (PoisoningCore, {"train_steps": 2, "final_train_steps": 3}),
    "poisoning-svm-loss-blackbox-targeted": (PoisoningCore, {
        "victim": "svm", "sanitizer": "loss", "threat_model": "black_box", "goal": "targeted",
        "train_steps": 2, "final_train_steps": 3}),
    "poisoning-mlp-knn": (PoisoningCore, {"victim": "mlp", "sanitizer": "knn", "train_steps": 2, "final_train_steps": 3,
                                          "points_per_step": 2}),
    "poisoning-mlp-loss-blackbox": (PoisoningCore, {"victim": "mlp", "sanitizer": "loss", "threat_model": "black_box",
                                                    "train_steps": 2, "final_train_steps": 3}),
    "backdoor-spectral": (BackdoorCore, {"train_steps": 3}),
    "backdoor-blend-ac": (BackdoorCore, {"train_steps": 3, "trigger": "blend", "detector": "activation_clustering"}),
    "training-control": (TrainingControlCore, {"horizon": 4, "steps_per_action": 2}),
    "trojan-detection": (TrojanDetectionCore, {"max_queries": 3}),
}


def _run(cls, kwargs, n=3, steps=2, seed=0):
    """Build a core under the tracker and step it; return the tracker, the core and per-step (obs, info)."""
    tracker = DeviceTracker()
    rng = np.random.default_rng(seed)
    with tracker:
        core = cls(n, device="cpu", **kwargs)
    for i, r in enumerate(core.rngs):
        r.bit_generator.state = np.random.default_rng(seed + i).bit_generator.state
    idx = np.arange(n)
    with tracker:
        core.reset_indices(idx)
    tracker.transfers.clear()
    per_step = []
    for _ in range(steps):
        space = core.single_action_space
        actions = rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)
        before = len(tracker.transfers)
        with tracker:
            obs, _, _, _, info = core.step_indices(idx, core.validate_actions(actions, n))
        per_step.append((obs, info, sum(tracker.transfers[before:]), len(tracker.transfers) - before))
    return tracker, core, per_step


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_keeps_every_tensor_on_the_device(case):
    cls, kwargs = CASES[case]
    tracker, _, per_step = _run(cls, kwargs)
    assert tracker.violations == [], f"{case}: {tracker.violations[:5]}"
    for obs, info, nbytes, count in per_step:
        # what comes back is the observation batch and the infos, not the training state
        # (a copy's predictions on the test set, or its flagged training points, would exceed this)
        m = len(obs)
        assert count >= 1
        assert nbytes <= obs.nbytes + 8 * m * (len(info) + 4), (case, nbytes, obs.nbytes)


@pytest.mark.parametrize("case", sorted(CASES))
def test_core_state_lives_on_its_device(case):
    cls, kwargs = CASES[case]
    _, core, _ = _run(cls, kwargs, steps=1)
    assert core.device == torch.device("cpu")
    found = list(_attribute_tensors(core, "core", set()))
    assert len(found) >= 3
    for name, t in found:
        assert t.device == core.device, name
        if any(s in name for s in _HOST_BY_DESIGN):
            continue
        assert _tag(t) == DEVICE, f"{name} {tuple(t.shape)} stayed on the host"


def test_tracker_catches_a_host_tensor_mixed_into_a_step():
    # the checks above can fail: a host tensor in a device computation, and .numpy() of a device tensor
    tracker = DeviceTracker()
    with tracker:
        on_device = torch.zeros(4, 3, device="cpu")
        host = torch.as_tensor(np.ones((4, 3), np.float32))
        _ = on_device + host
    assert any("mixes" in v for v in tracker.violations)
    tracker = DeviceTracker()
    with tracker:
        x = torch.as_tensor(np.ones(3, np.float32)).to("cpu")
        (x * 2).numpy()
        (x * 2).cpu().numpy()
    assert tracker.violations == ["numpy() of a device tensor (needs .cpu() first)"]
    assert tracker.transfers == [12]
    tracker = DeviceTracker()
    with tracker:  # legal: a host index into a device tensor, a host scalar, a host -> device copy
        y = torch.zeros(5, 2, device="cpu")
        y[torch.as_tensor(np.array([0, 2]))] = 1.0
        y.mul_(torch.tensor(2.0))
        y.copy_(torch.ones(5, 2))
    assert tracker.violations == []


def test_tracker_catches_a_core_that_keeps_its_data_on_the_host():
    cls, kwargs = CASES["poisoning-logistic"]
    tracker, core, _ = _run(cls, kwargs, steps=1)
    tracker = DeviceTracker()
    with tracker:
        core.y_test_t = torch.as_tensor(core.y_test)  # as the core was before it took device=
        core.step_indices(np.arange(core.num_envs), np.zeros((core.num_envs, core.single_action_space.shape[0]), np.float32))
    assert tracker.violations


BAD_DEVICES = ["bogus", "cuda:99", 3] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("cls", [PoisoningCore, BackdoorCore, TrainingControlCore, TrojanDetectionCore], ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", BAD_DEVICES, ids=str)
def test_unavailable_device_is_refused(cls, bad):
    with pytest.raises(ValueError, match=r"device=.*available here: 'cpu'"):
        cls(1, device=bad)


def test_check_device():
    assert check_device("device", "cpu") == torch.device("cpu")
    assert check_device("device", torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="device='cpu:1'"):
        check_device("device", "cpu:1")
    with pytest.raises(ValueError, match="must be a device name"):
        check_device("device", None)


def test_make_vec_passes_device_on():
    import gymnasium as gym

    import deploy_envs  # noqa: F401

    for env_id in ("deploy_envs/Poisoning-v0", "deploy_envs/Backdoor-v0", "deploy_envs/TrainingControl-v0", "deploy_envs/TrojanDetection-v0"):
        with pytest.raises(ValueError, match="device='bogus'"):
            gym.make_vec(env_id, num_envs=2, device="bogus")
        env = gym.make(env_id, device="cpu")
        assert env.unwrapped.core.device == torch.device("cpu")
        env.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_step_matches_cpu(case):
    cls, kwargs = CASES[case]
    n, seed = 3, 0
    out = {}
    for dev in ("cpu", "cuda"):
        core = cls(n, device=dev, **kwargs)
        for i, r in enumerate(core.rngs):
            r.bit_generator.state = np.random.default_rng(seed + i).bit_generator.state
        obs0, _ = core.reset_indices(np.arange(n))
        space = core.single_action_space
        a = np.random.default_rng(5).uniform(space.low, space.high, (n, *space.shape)).astype(np.float32)
        obs, reward, *_ = core.step_indices(np.arange(n), a)
        out[dev] = (obs0, obs, reward)
        assert isinstance(obs, np.ndarray)
    # the same computation in another order of float operations: close, not equal (a test
    # prediction that flips moves Poisoning's reward by 100 / 360 percentage points)
    np.testing.assert_allclose(out["cpu"][0], out["cuda"][0], atol=0.05)
    np.testing.assert_allclose(out["cpu"][1], out["cuda"][1], atol=0.05)
    np.testing.assert_allclose(out["cpu"][2], out["cuda"][2], atol=1.0)


def _bench_gpu():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_refuses_an_unavailable_device(capsys):
    with pytest.raises(SystemExit):
        _bench_gpu().main(["--device", "cuda:99"])
    assert "--device='cuda:99' is not available" in capsys.readouterr().err


def test_bench_gpu_writes_native_and_sync_rates(tmp_path):
    import json

    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--envs", "TrainingControl-v0", "TrojanDetection-v0", "--sizes", "2", "3",
            "--sync-copies", "2", "--min-steps", "1", "--seconds", "0", "--reps", "1", "--out", str(out)]
    assert _bench_gpu().main(args) == 0
    res = json.loads(out.read_text())
    assert res["machine"]["device"] == "cpu" and res["settings"]["sizes"] == [2, 3]
    assert [e["env"] for e in res["envs"]] == ["deploy_envs/TrainingControl-v0", "deploy_envs/TrojanDetection-v0"]
    for entry in res["envs"]:  # both cores take device=: each is measured on it
        assert entry["kwargs"]["device"] == "cpu"
        assert [r["num_envs"] for r in entry["rows"]] == [2, 3]
        assert [r["sync_num_envs"] for r in entry["rows"]] == [2, 2]
        for r in entry["rows"]:
            assert r["native"]["steps_per_s"] > 0 and r["sync"]["steps_per_s"] > 0
            assert r["ratio"] == pytest.approx(r["native"]["steps_per_s"] / r["sync"]["steps_per_s"])

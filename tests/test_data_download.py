"""Tests for deploy_envs.data.download: cache, sha256 checks, file:// downloads, IDX parsing.

Every test serves tiny fake IDX files from tmp_path (via file:// URLs); none touches the network.
"""
from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import deploy_envs.data.download as dl
from deploy_envs.data import DatasetUnavailableError, load_dataset
from deploy_envs.data.download import IDX_DATASETS, load_idx_dataset, parse_idx

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
TRAIN_LABELS = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
TEST_LABELS = np.array([7, 8, 4], dtype=np.uint8)


def _idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def _write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload, mtime=0))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FakeSource:
    """A folder with the four tiny .gz files, their raw arrays and sha256 digests."""

    def __init__(self, folder: Path) -> None:
        rng = np.random.default_rng(0)
        self.folder = folder
        self.train_images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
        self.test_images = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
        self.train_images[0, 0, 0], self.train_images[0, 0, 1] = 0, 255  # hit both ends of the range
        folder.mkdir(parents=True)
        _write_gz(folder / FILES[0], _idx_images(self.train_images))
        _write_gz(folder / FILES[1], _idx_labels(TRAIN_LABELS))
        _write_gz(folder / FILES[2], _idx_images(self.test_images))
        _write_gz(folder / FILES[3], _idx_labels(TEST_LABELS))
        self.checksums = {name: _sha256(folder / name) for name in FILES}

    @property
    def url(self) -> str:
        return self.folder.as_uri() + "/"

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy2(self.folder / name, directory / name)


@pytest.fixture
def source(tmp_path: Path) -> FakeSource:
    return FakeSource(tmp_path / "mirror")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory that DEPLOY_ENVS_CACHE points at."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DEPLOY_ENVS_CACHE", str(root))
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any urlopen call fail loudly and record the URLs it was asked for."""
    calls: list[str] = []

    def refuse(url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(url)
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(dl.urllib.request, "urlopen", refuse)
    return calls


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") or p.name.startswith("."))


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_file_table_is_complete(name: str) -> None:
    spec = IDX_DATASETS[name]
    assert tuple(f.filename for f in spec.files) == FILES
    for f in spec.files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.filename
        assert f.size > 0
    assert spec.base_urls and all(u.startswith(("https://", "http://")) and u.endswith("/") for u in spec.base_urls)
    assert spec.num_classes == 10
    assert len({f.sha256 for f in spec.files}) == 4


# --------------------------------------------------------------------------- loading and caching


def test_load_from_prefilled_cache(source: FakeSource, cache: Path, no_network: list[str]) -> None:
    source.copy_to(cache / "mnist")
    ds = load_idx_dataset("mnist", download=False, checksums=source.checksums)

    assert ds.name == "mnist" and ds.num_classes == 10 and ds.class_names == tuple("0123456789")
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    np.testing.assert_allclose(ds.x_train[:, 0], source.train_images / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.x_test[:, 0], source.test_images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, TRAIN_LABELS)
    np.testing.assert_array_equal(ds.y_test, TEST_LABELS)
    assert no_network == []


def test_explicit_root_holds_the_files(source: FakeSource, tmp_path: Path, no_network: list[str]) -> None:
    ds = load_idx_dataset("fashion_mnist", root=source.folder, download=False, checksums=source.checksums)
    assert ds.name == "fashion_mnist" and ds.class_names[0] == "T-shirt/top"
    np.testing.assert_array_equal(ds.y_test, TEST_LABELS)


def test_download_into_empty_cache_then_reuse(
    source: FakeSource, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = load_idx_dataset("mnist", base_urls=[source.url], checksums=source.checksums)
    target = cache / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert {name: _sha256(target / name) for name in FILES} == source.checksums
    np.testing.assert_array_equal(ds.y_train, TRAIN_LABELS)

    # Second load: the source is gone and any download attempt would fail the test.
    shutil.rmtree(source.folder)
    calls: list[str] = []
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, *a, **k: calls.append(url))
    again = load_idx_dataset("mnist", base_urls=[source.url], checksums=source.checksums)
    assert calls == []
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_falls_back_to_the_next_mirror(source: FakeSource, cache: Path, tmp_path: Path) -> None:
    dead = (tmp_path / "dead").as_uri() + "/"
    ds = load_idx_dataset("mnist", base_urls=[dead, source.url], checksums=source.checksums)
    assert len(ds.y_train) == 5
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(FILES)


def test_corrupted_cached_file_is_redownloaded(source: FakeSource, cache: Path) -> None:
    target = cache / "mnist"
    source.copy_to(target)
    (target / FILES[2]).write_bytes(b"garbage, not the test images")

    ds = load_idx_dataset("mnist", base_urls=[source.url], checksums=source.checksums)

    assert (target / FILES[2]).read_bytes() == (source.folder / FILES[2]).read_bytes()
    np.testing.assert_allclose(ds.x_test[:, 0], source.test_images / 255.0, atol=1e-7)
    assert _leftovers(target) == []


def test_corrupted_cached_file_without_download_raises(source: FakeSource, cache: Path) -> None:
    target = cache / "mnist"
    source.copy_to(target)
    (target / FILES[1]).write_bytes(b"bad")
    bad_digest = hashlib.sha256(b"bad").hexdigest()

    with pytest.raises(DatasetUnavailableError) as info:
        load_idx_dataset("mnist", download=False, checksums=source.checksums)
    message = str(info.value)
    assert FILES[1] in message and bad_digest in message and source.checksums[FILES[1]] in message


# --------------------------------------------------------------------------- failures


def test_download_with_wrong_hash_raises_and_leaves_nothing(source: FakeSource, cache: Path) -> None:
    wrong = "0" * 64
    checksums = dict(source.checksums, **{FILES[1]: wrong})

    with pytest.raises(DatasetUnavailableError) as info:
        load_idx_dataset("mnist", base_urls=[source.url], checksums=checksums)

    message = str(info.value)
    assert FILES[1] in message
    assert wrong in message and source.checksums[FILES[1]] in message  # expected and actual digests
    target = cache / "mnist"
    assert not (target / FILES[1]).exists()
    assert _leftovers(target) == []
    assert (target / FILES[0]).exists()  # the file before it did download and verify


def test_unreachable_source_raises_with_instructions(cache: Path, tmp_path: Path) -> None:
    missing = (tmp_path / "no_such_mirror").as_uri() + "/"

    with pytest.raises(DatasetUnavailableError) as info:
        load_idx_dataset("mnist", base_urls=[missing])

    message = str(info.value)
    target = cache / "mnist"
    assert FILES[0] in message
    assert str(target) in message
    assert missing + FILES[0] in message  # the URL that was tried
    assert "DEPLOY_ENVS_CACHE" in message and "'mnist'" in message
    assert not target.exists() or sorted(target.iterdir()) == []


def test_download_false_with_empty_cache_raises(cache: Path, no_network: list[str]) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_idx_dataset("fashion_mnist", download=False)
    message = str(info.value)
    assert FILES[0] in message and str(cache / "fashion_mnist") in message and "download=False" in message
    assert no_network == []


def test_corrupt_idx_magic_raises_value_error(source: FakeSource, tmp_path: Path) -> None:
    root = tmp_path / "corrupt"
    source.copy_to(root)
    bad = struct.pack(">II", 2051, len(TRAIN_LABELS)) + TRAIN_LABELS.tobytes()  # image magic on labels
    _write_gz(root / FILES[1], bad)
    checksums = dict(source.checksums, **{FILES[1]: _sha256(root / FILES[1])})

    with pytest.raises(ValueError, match=r"magic number 2051 \(expected 2049\)"):
        load_idx_dataset("mnist", root=root, download=False, checksums=checksums)


def test_truncated_idx_raises_value_error() -> None:
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    data = _idx_images(images)
    assert parse_idx(data, 2051).shape == (2, 28, 28)
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(data[:-1], 2051, source="cut.idx")
    with pytest.raises(ValueError, match="truncated"):
        parse_idx(b"\x00\x00", 2051)


def test_not_gzip_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(_idx_labels(TRAIN_LABELS))  # valid IDX, but not gzipped
    with pytest.raises(ValueError, match="gzip"):
        dl.read_idx_gz(path, 2049)


def test_unknown_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="dataset='cifar'"):
        load_idx_dataset("cifar")

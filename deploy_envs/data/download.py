"""Download, verify and parse the gzipped IDX datasets (``mnist``, ``fashion_mnist``).

Each dataset is four gzipped IDX files (train/test images and labels). They are
downloaded once into ``cache_dir() / <name>`` (``DEPLOY_ENVS_CACHE``, default
``~/.cache/deploy_envs``), verified by sha256 every time they are loaded, and
parsed with nothing but :mod:`gzip`, :mod:`struct` and numpy.

Downloads go to a temporary file in the cache directory and are renamed into
place only once their sha256 matches, so a partial or corrupt download never
sits under the final file name. Without network access a
:class:`~deploy_envs.data.datasets.DatasetUnavailableError` explains which files
are missing and where to put them by hand.

The sha256 digests below are those recorded by TensorFlow Datasets
(``tensorflow/datasets``: ``tensorflow_datasets/url_checksums/mnist.txt`` and
``tensorflow_datasets/url_checksums/fashion_mnist.txt``), which also give the
file sizes; many independent projects record the same digests.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy_envs.core.validation import check_choice
from deploy_envs.data.datasets import Dataset, DatasetUnavailableError, cache_dir

logger = logging.getLogger(__name__)

#: Seconds to wait for a mirror to answer (and between chunks) before giving up on it.
DOWNLOAD_TIMEOUT_S = 60.0
#: Bytes read (and hashed) at a time.
_CHUNK = 1 << 20

#: IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), the rank.
IDX_IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dimensions (n, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dimension (n,)
IMAGE_SIDE = 28


@dataclass(frozen=True)
class IdxFile:
    """One gzipped IDX file of a dataset: its name, sha256 and size in bytes."""

    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class IdxDatasetSpec:
    """Where to fetch a dataset's four files and how to check them."""

    name: str
    base_urls: tuple[str, ...]
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    class_names: tuple[str, ...]

    @property
    def files(self) -> tuple[IdxFile, IdxFile, IdxFile, IdxFile]:
        """The four files, in download order."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


#: The file table. Digests and sizes: tensorflow/datasets url_checksums (see module docstring).
IDX_DATASETS: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        name="mnist",
        base_urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        train_images=IdxFile(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
        ),
        train_labels=IdxFile(
            "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
        ),
        test_images=IdxFile(
            "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
        ),
        test_labels=IdxFile(
            "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
        ),
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": IdxDatasetSpec(
        name="fashion_mnist",
        base_urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        train_images=IdxFile(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            26_421_880,
        ),
        train_labels=IdxFile(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            29_515,
        ),
        test_images=IdxFile(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            4_422_102,
        ),
        test_labels=IdxFile(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            5_148,
        ),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}


# --------------------------------------------------------------------------- public entry point


def load_idx_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    base_urls: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """Load ``mnist`` or ``fashion_mnist`` from the cache, downloading missing files.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: the directory holding the four ``.gz`` files; default ``cache_dir() / name``.
        download: fetch files that are missing or fail their sha256 check; with
            ``False`` such a file raises :class:`DatasetUnavailableError` instead.
        base_urls: mirrors to try in order (each the URL of a folder, ``file://``
            included); default the dataset's own mirrors.
        checksums: ``{filename: sha256}`` overriding the recorded digests.

    Returns:
        A :class:`Dataset` with float32 images ``(n, 1, 28, 28)`` in ``[0, 1]``, int64
        labels, and the files' own 60000/10000 train/test split.

    Raises:
        DatasetUnavailableError: a file is missing or corrupt and cannot be fetched.
        ValueError: ``name`` is unknown, or a file that passed its checksum is not valid IDX.
    """
    check_choice("dataset", name, IDX_DATASETS)
    spec = IDX_DATASETS[name]
    directory = Path(root).expanduser() if root is not None else cache_dir() / name
    urls = tuple(base_urls) if base_urls is not None else spec.base_urls
    digests = {f.filename: f.sha256 for f in spec.files}
    digests.update(checksums or {})

    paths = [
        ensure_file(spec, f.filename, digests[f.filename], directory, urls, download=download)
        for f in spec.files
    ]
    x_train, x_test = (_images_to_float(read_idx_gz(p, IDX_IMAGES_MAGIC)) for p in paths[0::2])
    y_train, y_test = (_labels_to_int(read_idx_gz(p, IDX_LABELS_MAGIC), spec) for p in paths[1::2])
    _check_same_length(x_train, y_train, paths[0], paths[1])
    _check_same_length(x_test, y_test, paths[2], paths[3])
    logger.info("loaded %s: %d train / %d test images", name, len(y_train), len(y_test))
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=spec.num_classes,
        class_names=spec.class_names,
    )


# --------------------------------------------------------------------------- cache and download


def ensure_file(
    spec: IdxDatasetSpec,
    filename: str,
    sha256: str,
    directory: Path,
    base_urls: Sequence[str],
    *,
    download: bool = True,
) -> Path:
    """Return ``directory / filename`` once its sha256 matches, downloading it if needed."""
    path = directory / filename
    if path.is_file():
        actual = file_sha256(path)
        if actual == sha256:
            logger.debug("%s: cached copy verified", path)
            return path
        problem = f"the cached {path} has sha256 {actual}, expected {sha256}"
        logger.warning("%s; %s", problem, "downloading it again" if download else "download=False")
    else:
        problem = f"{filename} is not in {directory}"
    if not download:
        raise DatasetUnavailableError(
            f"Dataset {spec.name!r}: {problem}, and download=False.\n"
            + _manual_instructions(spec, directory, base_urls)
        )
    return download_file(spec, filename, sha256, directory, base_urls)


def download_file(
    spec: IdxDatasetSpec,
    filename: str,
    sha256: str,
    directory: Path,
    base_urls: Sequence[str],
) -> Path:
    """Fetch ``filename`` from the first mirror that serves it with the right sha256.

    The file is written to a temporary name in ``directory`` and atomically renamed
    to ``directory / filename`` only after its digest matched.
    """
    directory.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for base in base_urls:
        url = _join_url(base, filename)
        logger.info("downloading %s", url)
        try:
            tmp, actual = _fetch_to_temp(url, directory, filename)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            logger.warning("download of %s failed: %s", url, exc)
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        if actual != sha256:
            tmp.unlink(missing_ok=True)
            logger.warning("%s: sha256 %s, expected %s; discarded", url, actual, sha256)
            failures.append(f"{url}: sha256 mismatch: expected {sha256}, got {actual}")
            continue
        target = directory / filename
        os.replace(tmp, target)
        logger.info("saved %s (sha256 verified)", target)
        return target
    raise DatasetUnavailableError(_download_failed_message(spec, filename, directory, base_urls, failures))


def _fetch_to_temp(url: str, directory: Path, filename: str) -> tuple[Path, str]:
    """Stream ``url`` into a new temporary file in ``directory``; return it and its sha256.

    The temporary file is removed if anything goes wrong.
    """
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            digest = _copy_and_hash(response, out, _content_length(response), filename)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest


def _copy_and_hash(source, out, total: int | None, desc: str) -> str:  # noqa: ANN001 (file-likes)
    """Copy ``source`` to ``out`` in chunks and return the sha256 of what was copied."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=not _stderr_is_tty()
    ) as bar:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _content_length(response) -> int | None:  # noqa: ANN001 (urllib response)
    """The ``Content-Length`` of a response, if it states one."""
    value = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
    return int(value) if value and value.isdigit() else None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _join_url(base: str, filename: str) -> str:
    return base if base.endswith(filename) else base.rstrip("/") + "/" + filename


def _manual_instructions(spec: IdxDatasetSpec, directory: Path, base_urls: Sequence[str]) -> str:
    """How to put the files in place by hand."""
    names = ", ".join(f.filename for f in spec.files)
    mirrors = ", ".join(base_urls) if base_urls else "(no mirror given)"
    return (
        f"To install {spec.name!r} by hand, download {names} from one of {mirrors} "
        f"and place them (still gzipped) in {directory}; or set DEPLOY_ENVS_CACHE to a "
        f"directory whose '{spec.name}/' subfolder already holds them "
        f"(the cache is currently {cache_dir()})."
    )


def _download_failed_message(
    spec: IdxDatasetSpec,
    filename: str,
    directory: Path,
    base_urls: Sequence[str],
    failures: Sequence[str],
) -> str:
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no URL to try: base_urls is empty)"
    return (
        f"Could not download {filename} for dataset {spec.name!r} into {directory}.\n"
        f"URLs tried:\n{tried}\n" + _manual_instructions(spec, directory, base_urls)
    )


# --------------------------------------------------------------------------- IDX parsing


def read_idx_gz(path: str | os.PathLike[str], expected_magic: int) -> np.ndarray:
    """Decompress and parse a gzipped IDX file; raise ``ValueError`` if it is corrupt."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a valid gzip file ({exc})") from exc
    return parse_idx(data, expected_magic, source=str(path))


def parse_idx(data: bytes, expected_magic: int, *, source: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX bytes holding unsigned bytes.

    Format: a big-endian uint32 magic (``0x0000 08 <rank>``), ``rank`` big-endian
    uint32 dimensions, then the values. Raises ``ValueError`` if the magic is not
    ``expected_magic`` or the payload size does not match the dimensions.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: truncated IDX file ({len(data)} bytes, no header)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise ValueError(f"{source}: bad IDX magic number {magic} (expected {expected_magic})")
    rank = magic & 0xFF
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = struct.unpack(f">{rank}I", data[4:header])
    expected_size = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected_size:
        raise ValueError(
            f"{source}: IDX size mismatch: dimensions {dims} need {expected_size} bytes, file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _images_to_float(images: np.ndarray) -> np.ndarray:
    """``(n, 28, 28)`` uint8 -> ``(n, 1, 28, 28)`` float32 in ``[0, 1]``."""
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"IDX images are {images.shape[1:]}, expected ({IMAGE_SIDE}, {IMAGE_SIDE})")
    return (images.astype(np.float32) / 255.0)[:, None, :, :]


def _labels_to_int(labels: np.ndarray, spec: IdxDatasetSpec) -> np.ndarray:
    """uint8 labels -> int64, checked to lie in ``[0, num_classes)``."""
    out = labels.astype(np.int64)
    if out.size and out.max() >= spec.num_classes:
        raise ValueError(f"{spec.name}: label {int(out.max())} out of range for {spec.num_classes} classes")
    return out


def _check_same_length(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path.name} has {len(images)} images but {label_path.name} has {len(labels)} labels"
        )

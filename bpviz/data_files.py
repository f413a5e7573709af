"""The original image files, read and checked: MNIST's IDX files, CIFAR-10's and CIFAR-100's python batches.

No downloads: both come from ``data_dir``. Every problem (a missing file, a truncated or foreign
one, a pickle that would run code) raises :class:`DataError` naming the file and what was expected.
``bpviz.data`` turns the arrays into a ``Dataset``.
"""

from __future__ import annotations

import codecs
import gzip
import math
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np


class DataError(ValueError):
    """Data files are missing or invalid; the message says which files to put where."""


# --- MNIST from the original IDX files -----------------------------------------------------------------
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801  # unsigned bytes, 3 resp. 1 dimensions


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic number, then one uint32 size per dimension)."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is truncated: {len(data)} bytes, not even an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(f"{path} is not the expected IDX file: magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path} is {problem}: {len(data)} bytes, header {shape} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _mnist_paths(data_dir: str | Path | None) -> dict[str, Path]:
    """Locate the four MNIST files (plain or .gz), or say exactly which are missing and where they go."""
    names = ", ".join(_MNIST_FILES.values())
    if data_dir is None:
        raise DataError(
            f"dataset 'mnist' reads the original MNIST files: set data_dir to a folder containing {names} "
            "(each may be gzipped, with a .gz suffix)"
        )
    folder = Path(data_dir).expanduser()
    found, missing = {}, []
    for key, name in _MNIST_FILES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        existing = [p for p in candidates if p.is_file()]
        if existing:
            found[key] = existing[0]
        else:
            missing.append(name)
    if missing:
        raise DataError(
            f"MNIST files missing: put {', '.join(missing)} (plain or gzipped as .gz) in {folder}; "
            f"the folder needs all of {names}"
        )
    return found


# --- CIFAR-10 and CIFAR-100 from the original python pickles -----------------------------------------
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR100_FILES = ["train", "test", "meta"]
_CIFAR100_SUBDIR = "cifar-100-python"


def _numpy_pickle_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR batch needs: numpy's array rebuilders (under numpy 1.x and 2.x module
    names), ndarray, dtype, and the bytes decoder Python 3 uses for protocol-2 pickles."""
    reconstruct = np.empty(0).__reduce_ex__(2)[0]  # numpy's private array rebuilders, however
    frombuffer = np.empty(0).__reduce_ex__(5)[0]  # this numpy version names their module
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only: a general pickle can run any code when loaded."""

    _allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR batch)") from None


def _unpickle(path: Path, what: str) -> Any:
    try:
        with path.open("rb") as fh:
            return _ArrayUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # a malformed pickle can fail in many ways; all mean "not a CIFAR file"
        raise DataError(f"{path} is not a valid {what}: {exc}") from None


def _read_cifar_batch(path: Path, labels_key: bytes = b"labels", n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) from one CIFAR batch, after checking its layout
    (CIFAR-10's batches label with b'labels', CIFAR-100's files with b'fine_labels')."""
    what = "CIFAR-10 batch" if n_classes == 10 else "CIFAR-100 file"
    batch = _unpickle(path, what)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(labels_key) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected b'data' to be a uint8 array of shape (N, 3072)")
    labels = np.asarray(labels if isinstance(labels, list) else [], dtype=np.int64)
    if len(labels) != len(data) or (labels.size and (labels.min() < 0 or labels.max() >= n_classes)):
        raise DataError(f"{path}: expected {labels_key!r} to be a list of {len(data)} class indices 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels  # rows hold the red, green, then blue 32x32 planes


def _cifar_folder(data_dir: str | Path | None, dataset: str, names: list[str], subdir: str, archive: str) -> Path:
    """The folder holding all of ``names``: data_dir itself or its ``subdir`` subfolder."""
    title = dataset.upper().replace("CIFAR", "CIFAR-")
    if data_dir is None:
        raise DataError(
            f"dataset {dataset!r} reads the original {title} python batches: set data_dir to a folder "
            f"containing {', '.join(names)} (or its {subdir}/ subfolder)"
        )
    folder = Path(data_dir).expanduser()
    candidates = [folder, folder / subdir]
    missing = [[n for n in names if not (c / n).is_file()] for c in candidates]
    best = min(range(len(candidates)), key=lambda i: len(missing[i]))
    if missing[best]:
        raise DataError(
            f"{title} files missing: put {', '.join(missing[best])} in {candidates[best]}; the folder needs "
            f"all of {', '.join(names)} (as unpacked from {archive} into {folder} or {folder / subdir})"
        )
    return candidates[best]


def read_mnist(data_dir: str | Path | None) -> dict[str, np.ndarray]:
    """The four MNIST arrays (``train_images`` (N, 28, 28) uint8, ``train_labels``, ``test_*``), checked."""
    paths = _mnist_paths(data_dir)
    arrays = {
        key: _read_idx(path, _IDX_IMAGES if key.endswith("images") else _IDX_LABELS) for key, path in paths.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (28, 28):
            raise DataError(f"{paths[f'{split}_images']}: images are {images.shape[1:]}, MNIST's are (28, 28)")
        if len(images) != len(labels):
            raise DataError(
                f"{paths[f'{split}_images']} holds {len(images)} images but "
                f"{paths[f'{split}_labels']} holds {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise DataError(f"{paths[f'{split}_labels']}: label {labels.max()} is not a digit 0..9")
    return arrays


def read_cifar10(data_dir: str | Path | None, n_train: int | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """The folder and the CIFAR-10 arrays (``train_images`` (N, 3, 32, 32) uint8, ``train_labels``,
    ``test_*``); only as many training batches as ``n_train`` needs are read."""
    folder = _cifar_folder(data_dir, "cifar10", _CIFAR_TRAIN + [_CIFAR_TEST], _CIFAR_SUBDIR, "cifar-10-python.tar.gz")
    train_x, train_y = [], []
    for name in _CIFAR_TRAIN:
        images, labels = _read_cifar_batch(folder / name)
        train_x.append(images)
        train_y.append(labels)
        if n_train is not None and sum(len(y) for y in train_y) >= n_train:
            break
    test_x, test_y = _read_cifar_batch(folder / _CIFAR_TEST)
    arrays = {
        "train_images": np.concatenate(train_x),
        "train_labels": np.concatenate(train_y),
        "test_images": test_x,
        "test_labels": test_y,
    }
    return folder, arrays


def read_cifar100(data_dir: str | Path | None) -> tuple[Path, dict[str, Any]]:
    """The folder and the CIFAR-100 arrays (as :func:`read_cifar10`'s, with the 100 fine labels) and
    ``class_names`` (the fine label names from ``meta``)."""
    folder = _cifar_folder(data_dir, "cifar100", _CIFAR100_FILES, _CIFAR100_SUBDIR, "cifar-100-python.tar.gz")
    train_images, train_labels = _read_cifar_batch(folder / "train", b"fine_labels", 100)
    test_images, test_labels = _read_cifar_batch(folder / "test", b"fine_labels", 100)
    meta = _unpickle(folder / "meta", "CIFAR-100 meta file")
    names = meta.get(b"fine_label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 100 or not all(isinstance(n, bytes) for n in names):
        raise DataError(f"{folder / 'meta'}: expected b'fine_label_names' to be a list of 100 names")
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "class_names": [n.decode() for n in names],
    }
    return folder, arrays

"""Small data folders in the real file formats, for ``bpviz reproduce --tiny``: MNIST's IDX files,
CIFAR-10's python batches and CIFAR-100's python files, written byte for byte as the originals are
laid out, so a tiny run reads them through the same readers (``bpviz.data_files``) as a real one.

The images are not noise: each class is a fixed random pattern plus per-image noise and a random
shift, so a tiny run can learn something in seconds and its curves mean what a real run's do.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

SHAPES = {"mnist": (28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}


def class_images(dataset: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images of ``dataset``'s shape and their labels (every class as evenly as possible)."""
    rng = np.random.default_rng(seed)
    shape, k = SHAPES[dataset], CLASSES[dataset]
    patterns = np.random.default_rng(1234).uniform(40, 215, (k, *shape))  # the same classes in every split
    labels = np.arange(n) % k
    rng.shuffle(labels)
    images = patterns[labels] + rng.normal(0, 25, (n, *shape))
    shifts = rng.integers(-2, 3, (n, 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i] = np.roll(images[i], (dy, dx), axis=(-2, -1))
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def _idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") if path.suffix == ".gz" else path.open("wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_mnist(folder: Path, n_train: int, n_test: int, seed: int = 0, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        images, labels = class_images("mnist", n, seed + (split == "test"))
        _idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x00000803)
        _idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x00000801)
    return folder


def _pickle(path: Path, content: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(content, fh, protocol=2)  # the protocol the originals were written with


def _batch(images: np.ndarray, labels: np.ndarray, key: bytes, name: str) -> dict:
    return {
        b"batch_label": name.encode(),
        key: [int(v) for v in labels],
        b"data": images.reshape(len(images), -1),  # the red, green, then blue 32x32 planes per row
        b"filenames": [f"synthetic_{i}.png".encode() for i in range(len(labels))],
    }


def write_cifar10(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    folder = folder / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = class_images("cifar10", n_train, seed)
    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        _pickle(folder / f"data_batch_{i}", _batch(images[part], labels[part], b"labels", f"training batch {i} of 5"))
    images, labels = class_images("cifar10", n_test, seed + 1)
    _pickle(folder / "test_batch", _batch(images, labels, b"labels", "testing batch 1 of 1"))
    return folder.parent


def write_cifar100(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    folder = folder / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = class_images("cifar100", n, s)
        content = _batch(images, labels, b"fine_labels", split)
        content[b"coarse_labels"] = [int(v) // 5 for v in labels]
        _pickle(folder / split, content)
    names = [f"synthetic_class_{i:02d}".encode() for i in range(100)]
    _pickle(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[::5]})
    return folder.parent


WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10, "cifar100": write_cifar100}

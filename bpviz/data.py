"""Datasets: small generated problems that show how training works, and real image sets read from disk.

Everything comes back as one `Dataset` of CPU tensors, so the rest of the engine never cares where
the data came from. Inputs are standardised with *training-set* statistics only (the test set must
not leak into preprocessing); the statistics are kept in ``meta["normalization"]`` so plots can map
inputs back to their original units: ``x = (raw * scale - mean) / std``, per feature for vectors and
per channel for images.

Generation is deterministic in ``seed`` and uses private random generators, never numpy's or torch's
global state. Nothing here downloads anything: MNIST and CIFAR-10/100 are read from the original files in
``data_dir``, and scikit-learn and mnist1d (for 'digits' and 'mnist1d') are optional dependencies.
"""

from __future__ import annotations

import importlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from bpviz.config import RunConfig
from bpviz.data_files import (  # noqa: F401 (DataError: what loading raises)
    DataError,
    read_cifar10,
    read_cifar100,
    read_mnist,
)
from bpviz.device import torch_dtype

Task = Literal["classification", "regression"]

_PLAYGROUND_RADIUS = 6.0  # the TensorFlow Playground draws its toy data in [-6, 6]^2
_DIGIT_CLASSES = [str(d) for d in range(10)]
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Dataset:
    """A train/test split ready for training: float inputs, int64 labels (or float regression targets)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    n_outputs: int
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def load_dataset(cfg: RunConfig) -> Dataset:
    """Build the dataset a run describes (sizes, noise, seed, data_dir and dtype all come from `cfg`)."""
    dtype = torch_dtype(cfg.dtype)
    n_train, n_test, noise, seed = cfg.n_train, cfg.n_test, cfg.noise, cfg.seed
    toys = {"spirals": make_spirals, "circles": make_circles, "xor": make_xor, "gaussians": make_gaussians}
    if cfg.dataset in toys:
        return toys[cfg.dataset](n_train, n_test, noise, seed, dtype=dtype)
    if cfg.dataset == "teacher":
        return make_teacher(n_train, n_test, noise, seed, dtype=dtype)
    if cfg.dataset == "digits":
        return load_digits(n_train, n_test, seed, dtype=dtype)
    if cfg.dataset == "mnist1d":
        return load_mnist1d(n_train, n_test, seed, dtype=dtype)
    if cfg.dataset == "mnist":
        return load_mnist(cfg.data_dir, n_train, n_test, dtype=dtype)
    if cfg.dataset == "cifar10":
        return load_cifar10(cfg.data_dir, n_train, n_test, dtype=dtype)
    if cfg.dataset == "cifar100":
        return load_cifar100(cfg.data_dir, n_train, n_test, dtype=dtype)
    raise ValueError(f"unknown dataset {cfg.dataset!r}")


# --- shared helpers ---------------------------------------------------------------------------
def _standardize(
    x_train: np.ndarray, x_test: np.ndarray, scale: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Scale, then standardise axis 1 (features or channels) with statistics of the training set only."""
    train = torch.tensor(x_train, dtype=dtype) * scale
    test = torch.tensor(x_test, dtype=dtype) * scale
    dims = [d for d in range(train.ndim) if d != 1]
    var, mean = torch.var_mean(train, dim=dims, correction=0, keepdim=True)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature is centred, not blown up
    stats = {
        "scale": scale,
        "mean": mean.flatten().tolist(),
        "std": std.flatten().tolist(),
        "axis": "channel" if train.ndim > 2 else "feature",
    }
    return (train - mean) / std, (test - mean) / std, stats


def _classification(
    name: str,
    x: tuple[np.ndarray, np.ndarray],
    y: tuple[np.ndarray, np.ndarray],
    classes: list[str],
    scale: float,
    dtype: torch.dtype,
    meta: dict[str, Any],
) -> Dataset:
    """Assemble a classification `Dataset` from raw numpy train/test arrays."""
    x_train, x_test, stats = _standardize(x[0], x[1], scale, dtype)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=torch.tensor(y[0], dtype=torch.int64),
        x_test=x_test,
        y_test=torch.tensor(y[1], dtype=torch.int64),
        task="classification",
        n_outputs=len(classes),
        input_shape=tuple(x_train.shape[1:]),
        meta={**meta, "classes": classes, "normalization": stats},
    )


def _class_sizes(n: int, n_classes: int) -> list[int]:
    """Split n samples over the classes as evenly as possible."""
    return [n // n_classes + (k < n % n_classes) for k in range(n_classes)]


def _shuffle_split(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, n_train: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle (generators emit samples grouped by class) and cut into train and test."""
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    return (x[:n_train], x[n_train:]), (y[:n_train], y[n_train:])


def _toy(
    name: str,
    rng: np.random.Generator,
    points: np.ndarray,
    labels: np.ndarray,
    n_train: int,
    classes: list[str],
    noise: float,
    dtype: torch.dtype,
) -> Dataset:
    """Finish a 2-D toy given in Playground units: shuffle, split, scale to about [-1, 1], standardise."""
    x, y = _shuffle_split(rng, points, labels, n_train)
    meta = {"source": f"TensorFlow-Playground-style {name} generator", "noise": noise}
    return _classification(name, x, y, classes, 1.0 / _PLAYGROUND_RADIUS, dtype, meta)


def _optional(module: str, dataset: str, package: str) -> ModuleType:
    """Import an optional dependency, or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"dataset {dataset!r} needs {package}: pip install 'bpviz[data]'") from exc


def _first(n: int | None, available: int) -> int:
    """How many samples to take: all when n is None or asks for more than exist."""
    return available if n is None else min(n, available)


# --- 2-D toys (after the TensorFlow Playground) -------------------------------------------------
def make_spirals(n_train: int, n_test: int, noise: float, seed: int, dtype: torch.dtype = torch.float32) -> Dataset:
    """Two interleaved spirals; `noise` jitters each point by up to ±noise (Playground units, radius 5).

    Unlike the Playground, the positions along the spirals are drawn at random, so the test points
    are fresh samples rather than the same grid as the training points.
    """
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(n_train + n_test, 2)
    labels = np.repeat([0, 1], sizes)
    s = rng.uniform(0.0, 1.0, len(labels))  # position along the spiral: 0 = centre, 1 = outer end
    radius, angle = 5.0 * s, 1.75 * 2 * np.pi * s + np.pi * labels
    points = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    points += rng.uniform(-1.0, 1.0, points.shape) * noise
    return _toy("spirals", rng, points, labels, n_train, ["spiral A", "spiral B"], noise, dtype)


def make_circles(n_train: int, n_test: int, noise: float, seed: int, dtype: torch.dtype = torch.float32) -> Dataset:
    """A disk (class 0) inside a ring (class 1). As in the Playground, `noise` flips labels near the gap:
    the label is decided at a jittered copy of each point (jitter up to ±5·noise per coordinate)."""
    rng = np.random.default_rng(seed)
    big = 5.0
    n_inner, n_outer = _class_sizes(n_train + n_test, 2)
    radius = np.concatenate([rng.uniform(0.0, 0.5 * big, n_inner), rng.uniform(0.7 * big, big, n_outer)])
    angle = rng.uniform(0.0, 2 * np.pi, len(radius))
    points = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    jittered = points + rng.uniform(-big, big, points.shape) * noise
    labels = (np.linalg.norm(jittered, axis=1) >= 0.5 * big).astype(np.int64)
    return _toy("circles", rng, points, labels, n_train, ["inner", "outer"], noise, dtype)


def make_xor(n_train: int, n_test: int, noise: float, seed: int, dtype: torch.dtype = torch.float32) -> Dataset:
    """Quadrants: class 1 where x and y have opposite signs (x·y < 0). As in the Playground the points
    keep a small gap from the axes and `noise` flips labels by deciding them at a jittered copy."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-5.0, 5.0, (n_train + n_test, 2))
    points += np.where(points > 0, 0.3, -0.3)  # the Playground's padding away from the axes
    jittered = points + rng.uniform(-5.0, 5.0, points.shape) * noise
    labels = (jittered[:, 0] * jittered[:, 1] < 0).astype(np.int64)
    return _toy("xor", rng, points, labels, n_train, ["same sign", "opposite sign"], noise, dtype)


def make_gaussians(
    n_train: int,
    n_test: int,
    noise: float,
    seed: int,
    n_classes: int = 2,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Gaussian blobs with centres on a circle; 2 classes gives the Playground's blobs at ±(2, 2).

    `noise` widens the blobs as the Playground's slider does: variance 0.5 at noise 0, 4 at noise 0.5.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), _class_sizes(n_train + n_test, n_classes))
    angle = np.pi / 4 + 2 * np.pi * labels / n_classes
    centres = 2 * np.sqrt(2) * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    variance = 0.5 + 7.0 * noise
    points = centres + np.sqrt(variance) * rng.standard_normal(centres.shape)
    classes = [f"blob {k}" for k in range(n_classes)]
    return _toy("gaussians", rng, points, labels, n_train, classes, noise, dtype)


# --- teacher-student regression -------------------------------------------------------------------
def make_teacher(
    n_train: int,
    n_test: int,
    noise: float,
    seed: int,
    input_dim: int = 10,
    output_dim: int = 1,
    hidden: int = 32,
    depth: int = 2,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Regression on the outputs of a fixed random tanh MLP (the teacher) plus Gaussian noise of std
    `noise`, so the best achievable test error is known. Teacher, inputs and noise use independent
    streams of the seed: changing `noise` leaves the inputs and the clean targets unchanged."""
    teacher_rng, input_rng, noise_rng = np.random.default_rng(seed).spawn(3)
    x = input_rng.standard_normal((n_train + n_test, input_dim))
    h = x
    sizes = [input_dim] + [hidden] * depth + [output_dim]
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        weight = teacher_rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)
        bias = 0.1 * teacher_rng.standard_normal(fan_out)
        h = h @ weight + bias
        if layer < depth:
            h = np.tanh(h)
    y = h + noise * noise_rng.standard_normal(h.shape)
    x_train, x_test, stats = _standardize(x[:n_train], x[n_train:], 1.0, dtype)
    return Dataset(
        name="teacher",
        x_train=x_train,
        y_train=torch.tensor(y[:n_train], dtype=dtype),
        x_test=x_test,
        y_test=torch.tensor(y[n_train:], dtype=dtype),
        task="regression",
        n_outputs=output_dim,
        input_shape=(input_dim,),
        meta={
            "source": "random tanh teacher MLP",
            "teacher": {"input_dim": input_dim, "output_dim": output_dim, "hidden": hidden, "depth": depth},
            "noise": noise,
            "normalization": stats,
        },
    )


# --- small real data that needs no files ------------------------------------------------------------
def load_digits(n_train: int, n_test: int, seed: int, dtype: torch.dtype = torch.float32) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped with scikit-learn), shuffled by seed.

    There are only 1797 images: the training set takes what it asks for first (at most 1796), the test
    set gets at most what is left.
    """
    datasets = _optional("sklearn.datasets", "digits", "scikit-learn")
    bunch = datasets.load_digits()
    images, labels = bunch.images[:, None], bunch.target  # (1797, 1, 8, 8), pixel values 0..16
    n_train = min(n_train, len(labels) - 1)
    n_test = min(n_test, len(labels) - n_train)
    order = np.random.default_rng(seed).permutation(len(labels))[: n_train + n_test]
    x, y = images[order], labels[order]
    meta = {"source": "sklearn.datasets.load_digits"}
    return _classification(
        "digits", (x[:n_train], x[n_train:]), (y[:n_train], y[n_train:]), _DIGIT_CLASSES, 1 / 16, dtype, meta
    )


def load_mnist1d(n_train: int, n_test: int, seed: int, dtype: torch.dtype = torch.float32) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally by the mnist1d package, never downloaded.

    The generator makes the same number of samples per class, so it is asked for n_train + n_test
    rounded up to a multiple of 10; the surplus is dropped. It seeds numpy's and Python's global
    random generators, which are restored afterwards so loading data has no side effects.
    """
    mnist1d = _optional("mnist1d.data", "mnist1d", "mnist1d")
    args = mnist1d.get_dataset_args()
    args.num_samples = math.ceil((n_train + n_test) / 10) * 10
    args.train_split = 1.0  # split here instead, so the sizes are exact
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        generated = mnist1d.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = generated["x"], generated["y"]
    meta = {"source": "mnist1d.data.make_dataset (generated locally)"}
    return _classification(
        "mnist1d",
        (x[:n_train], x[n_train : n_train + n_test]),
        (y[:n_train], y[n_train : n_train + n_test]),
        _DIGIT_CLASSES,
        1.0,
        dtype,
        meta,
    )


# --- MNIST and CIFAR-10/100 from their original files (read and checked in bpviz.data_files) --------
def load_mnist(
    data_dir: str | Path | None,
    n_train: int | None = None,
    n_test: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """MNIST from the original IDX files in `data_dir`: the first n_train / n_test images (all if None)."""
    arrays = read_mnist(data_dir)
    n_train = _first(n_train, len(arrays["train_labels"]))
    n_test = _first(n_test, len(arrays["test_labels"]))
    x = (arrays["train_images"][:n_train, None], arrays["test_images"][:n_test, None])
    y = (arrays["train_labels"][:n_train], arrays["test_labels"][:n_test])
    meta = {"source": f"MNIST IDX files in {Path(data_dir).expanduser()}"}
    return _classification("mnist", x, y, _DIGIT_CLASSES, 1 / 255, dtype, meta)


def load_cifar10(
    data_dir: str | Path | None,
    n_train: int | None = None,
    n_test: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """CIFAR-10 from the original python batches: the first n_train / n_test images (all if None)."""
    folder, arrays = read_cifar10(data_dir, n_train)
    return _cifar("cifar10", arrays, _CIFAR10_CLASSES, n_train, n_test, dtype, f"CIFAR-10 python batches in {folder}")


def load_cifar100(
    data_dir: str | Path | None,
    n_train: int | None = None,
    n_test: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """CIFAR-100 (the 100 fine classes) from the original python files: the first n_train / n_test images."""
    folder, arrays = read_cifar100(data_dir)
    return _cifar("cifar100", arrays, arrays["class_names"], n_train, n_test, dtype, f"CIFAR-100 files in {folder}")


def _cifar(
    name: str,
    arrays: dict,
    classes: list[str],
    n_train: int | None,
    n_test: int | None,
    dtype: torch.dtype,
    source: str,
) -> Dataset:
    n_train, n_test = _first(n_train, len(arrays["train_labels"])), _first(n_test, len(arrays["test_labels"]))
    x = (arrays["train_images"][:n_train], arrays["test_images"][:n_test])
    y = (arrays["train_labels"][:n_train], arrays["test_labels"][:n_test])
    return _classification(name, x, y, classes, 1 / 255, dtype, {"source": source})

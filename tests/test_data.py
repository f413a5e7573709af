"""Tests for bpviz.data: generated toys, offline real datasets, and readers of the original file formats."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import socket
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpviz.config import RunConfig
from bpviz.data import (
    DataError,
    Dataset,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    load_mnist1d,
    make_circles,
    make_gaussians,
    make_spirals,
    make_teacher,
    make_xor,
)

TOYS = [make_spirals, make_circles, make_xor, make_gaussians]


def raw_inputs(x: torch.Tensor, meta: dict) -> np.ndarray:
    """Undo the standardisation recorded in meta: back to the generator's / file's units."""
    norm = meta["normalization"]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = np.asarray(norm["mean"]).reshape(shape)
    std = np.asarray(norm["std"]).reshape(shape)
    return (x.double().numpy() * std + mean) / norm["scale"]


def assert_train_standardized(ds: Dataset) -> None:
    dims = [d for d in range(ds.x_train.ndim) if d != 1]
    mean = ds.x_train.double().mean(dim=dims)
    std = ds.x_train.double().std(dim=dims, correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(std[std > 0], torch.ones_like(std[std > 0]), atol=1e-4)


# --- 2-D toys -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", TOYS)
def test_toy_shapes_dtypes_and_balance(make):
    ds = make(300, 100, 0.1, 0)
    assert ds.x_train.shape == (300, 2) and ds.x_test.shape == (100, 2)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.task == "classification" and ds.n_outputs == 2 and ds.input_shape == (2,)
    for y in (ds.y_train, ds.y_test):
        assert set(y.tolist()) == {0, 1}
    assert 0.35 < ds.y_train.double().mean().item() < 0.65
    assert_train_standardized(ds)
    assert len(ds.meta["classes"]) == 2


@pytest.mark.parametrize("make", TOYS)
def test_toy_deterministic_in_seed(make):
    a, b, c = make(200, 50, 0.1, 3), make(200, 50, 0.1, 3), make(200, 50, 0.1, 4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("make", TOYS)
def test_toy_noise_changes_data(make):
    clean, noisy = make(200, 50, 0.0, 0), make(200, 50, 0.3, 0)
    same_x = torch.equal(clean.x_train, noisy.x_train)
    same_y = torch.equal(clean.y_train, noisy.y_train)
    assert not (same_x and same_y)


@pytest.mark.parametrize("make", TOYS)
def test_toy_does_not_touch_global_rng(make):
    np.random.seed(123)
    torch.manual_seed(123)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    make(50, 10, 0.1, 0)
    assert np.random.rand() == expected_np and torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize("make", TOYS)
def test_toy_float64(make):
    ds = make(20, 10, 0.1, 0, dtype=torch.float64)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float64


def test_circles_inner_class_has_smaller_radius():
    ds = make_circles(400, 100, 0.0, 0)
    radius = np.linalg.norm(raw_inputs(ds.x_train, ds.meta), axis=1)
    y = ds.y_train.numpy()
    assert radius[y == 0].max() < radius[y == 1].min()  # at noise 0 the gap separates them exactly


def test_circles_noise_flips_labels_near_the_gap():
    clean, noisy = make_circles(400, 100, 0.0, 0), make_circles(400, 100, 0.3, 0)
    assert torch.equal(clean.x_train, noisy.x_train) and not torch.equal(clean.y_train, noisy.y_train)
    radius = np.linalg.norm(raw_inputs(noisy.x_train, noisy.meta), axis=1)
    y = noisy.y_train.numpy()
    assert radius[y == 0].mean() < radius[y == 1].mean()
    assert radius[y == 0].max() > radius[y == 1].min()  # now the classes overlap


def test_xor_label_is_quadrant_rule_at_noise_zero():
    ds = make_xor(300, 100, 0.0, 1)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        raw = raw_inputs(x, ds.meta)
        assert np.array_equal(y.numpy(), (raw[:, 0] * raw[:, 1] < 0).astype(np.int64))


def test_xor_noise_flips_some_labels():
    ds = make_xor(300, 100, 0.3, 1)
    raw = raw_inputs(ds.x_train, ds.meta)
    rule = (raw[:, 0] * raw[:, 1] < 0).astype(np.int64)
    flipped = (rule != ds.y_train.numpy()).mean()
    assert 0 < flipped < 0.5


def test_spirals_follow_two_arms_at_noise_zero():
    ds = make_spirals(300, 100, 0.0, 0)
    raw = raw_inputs(ds.x_train, ds.meta)
    radius = np.linalg.norm(raw, axis=1)
    angle = np.arctan2(raw[:, 0], raw[:, 1])  # the generator uses x = r sin(t), y = r cos(t)
    s = radius / 5.0
    for label, offset in ((0, 0.0), (1, np.pi)):
        mask = ds.y_train.numpy() == label
        expected = 1.75 * 2 * np.pi * s[mask] + offset
        residual = np.angle(np.exp(1j * (angle[mask] - expected)))
        assert np.abs(residual).max() < 1e-4
    assert raw.min() > -6 and raw.max() < 6  # Playground units before scaling


def test_gaussians_centres_and_spread():
    narrow, wide = make_gaussians(400, 100, 0.0, 0), make_gaussians(400, 100, 0.5, 0)
    raw = raw_inputs(narrow.x_train, narrow.meta)
    y = narrow.y_train.numpy()
    assert np.allclose(raw[y == 0].mean(0), [2, 2], atol=0.3)
    assert np.allclose(raw[y == 1].mean(0), [-2, -2], atol=0.3)
    spread = [raw_inputs(d.x_train, d.meta)[d.y_train.numpy() == 0].std() for d in (narrow, wide)]
    assert spread[1] > 2 * spread[0]


def test_gaussians_more_classes():
    ds = make_gaussians(300, 60, 0.1, 0, n_classes=5)
    assert ds.n_outputs == 5 and set(ds.y_train.tolist()) == set(range(5))
    counts = torch.bincount(ds.y_train, minlength=5)
    assert counts.min() > 30


# --- teacher ---------------------------------------------------------------------------------------
def test_teacher_regression_targets():
    ds = make_teacher(200, 50, 0.1, 0, input_dim=6, output_dim=3)
    assert ds.task == "regression" and ds.n_outputs == 3 and ds.input_shape == (6,)
    assert ds.x_train.shape == (200, 6) and ds.y_train.shape == (200, 3) and ds.y_test.shape == (50, 3)
    assert ds.y_train.dtype == torch.float32
    assert ds.y_train.std() > 0.05  # the teacher is not a constant
    assert_train_standardized(ds)


def test_teacher_noise_free_targets_reproducible():
    a, b, c = make_teacher(100, 20, 0.0, 7), make_teacher(100, 20, 0.0, 7), make_teacher(100, 20, 0.0, 8)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.y_test, b.y_test)
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.allclose(a.y_train, c.y_train)


def test_teacher_noise_has_requested_std():
    clean = make_teacher(2000, 10, 0.0, 1, dtype=torch.float64)
    noisy = make_teacher(2000, 10, 0.2, 1, dtype=torch.float64)
    assert torch.equal(clean.x_train, noisy.x_train)  # noise only touches the targets
    residual = (noisy.y_train - clean.y_train).std().item()
    assert abs(residual - 0.2) < 0.02


# --- digits and MNIST-1D --------------------------------------------------------------------------
def test_digits():
    ds = load_digits(500, 200, 0)
    assert ds.x_train.shape == (500, 1, 8, 8) and ds.x_test.shape == (200, 1, 8, 8)
    assert ds.n_outputs == 10 and ds.input_shape == (1, 8, 8)
    assert set(ds.y_train.tolist()) == set(range(10))
    assert_train_standardized(ds)
    other = load_digits(500, 200, 1)
    assert not torch.equal(ds.y_train, other.y_train)


def test_digits_caps_at_what_exists():
    ds = load_digits(5000, 500, 0)
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) >= 1


def test_digits_without_sklearn_explains(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        load_digits(10, 10, 0)


@pytest.fixture
def no_network(monkeypatch):
    """Make every network access fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    try:
        import requests

        monkeypatch.setattr(requests, "get", refuse)
        monkeypatch.setattr(requests.Session, "request", refuse)
    except ImportError:
        pass


def test_mnist1d_generated_offline(no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mnist1d's downloader would cache a pickle in the working directory
    np.random.seed(5)
    expected_next = np.random.rand()
    np.random.seed(5)
    ds = load_mnist1d(250, 75, 0)
    assert np.random.rand() == expected_next  # the generator's global seeding was undone
    assert list(tmp_path.iterdir()) == []
    assert ds.x_train.shape == (250, 40) and ds.x_test.shape == (75, 40)
    assert ds.n_outputs == 10 and ds.input_shape == (40,)
    assert set(ds.y_train.tolist()) == set(range(10))
    assert_train_standardized(ds)
    again, other = load_mnist1d(250, 75, 0), load_mnist1d(250, 75, 1)
    assert torch.equal(ds.x_train, again.x_train) and not torch.equal(ds.x_train, other.x_train)


# --- MNIST from IDX files ----------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(folder: Path, gz: bool, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, array in arrays.items():
        magic = 0x00000803 if "images" in name else 0x00000801
        write_idx(folder / (name + (".gz" if gz else "")), array, magic)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.x_test.shape == (3, 1, 28, 28)
    assert ds.n_outputs == 10 and ds.input_shape == (1, 28, 28)
    assert np.array_equal(ds.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(ds.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert np.allclose(raw_inputs(ds.x_train, ds.meta)[:, 0], arrays["train-images-idx3-ubyte"], atol=1e-3)
    assert np.allclose(raw_inputs(ds.x_test, ds.meta)[:, 0], arrays["t10k-images-idx3-ubyte"], atol=1e-3)
    assert_train_standardized(ds)


def test_mnist_standardization_uses_train_statistics_only(tmp_path):
    arrays = write_mnist(tmp_path, gz=False)
    ds = load_mnist(tmp_path)
    train = arrays["train-images-idx3-ubyte"] / 255.0
    test = arrays["t10k-images-idx3-ubyte"] / 255.0
    expected = (test - train.mean()) / train.std()
    assert np.allclose(ds.x_test[:, 0].numpy(), expected, atol=1e-5)


def test_mnist_takes_first_n(tmp_path):
    arrays = write_mnist(tmp_path, gz=True)
    ds = load_mnist(tmp_path, n_train=2, n_test=100)
    assert len(ds.y_train) == 2 and len(ds.y_test) == 3
    assert np.array_equal(ds.y_train.numpy(), arrays["train-labels-idx1-ubyte"][:2])


def test_mnist_missing_files_are_named(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" in message
    assert str(tmp_path) in message


def test_mnist_without_data_dir():
    with pytest.raises(DataError, match="data_dir"):
        load_dataset(RunConfig(dataset="mnist"))


def test_mnist_corrupt_magic(tmp_path):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5), 0x00000803)
    with pytest.raises(DataError, match="magic"):
        load_mnist(tmp_path)


def test_mnist_truncated_file(tmp_path):
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(tmp_path)


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4), 0x00000801)
    with pytest.raises(DataError, match="labels"):
        load_mnist(tmp_path)


# --- CIFAR-10 from python batches ----------------------------------------------------------------------
def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    batch = {
        b"batch_label": b"testing batch",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def write_cifar(folder: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = [(k + i) % 10 for i in range(per_batch)]
        write_cifar_batch(folder / name, data, labels)
        batches[name] = (data, labels)
    return batches


@pytest.mark.parametrize("subfolder", ["", "cifar-10-batches-py"])
def test_cifar_reads_batches(tmp_path, subfolder):
    batches = write_cifar(tmp_path / subfolder if subfolder else tmp_path)
    ds = load_cifar10(tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.n_outputs == 10 and ds.input_shape == (3, 32, 32) and len(ds.meta["classes"]) == 10
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.y_train.tolist() == train_labels and ds.y_test.tolist() == batches["test_batch"][1]
    assert np.allclose(raw_inputs(ds.x_train, ds.meta).reshape(15, 3072), train_data, atol=1e-3)
    assert len(ds.meta["normalization"]["mean"]) == 3
    assert_train_standardized(ds)


def test_cifar_channel_layout(tmp_path):
    write_cifar(tmp_path)
    data = np.zeros((2, 3072), dtype=np.uint8)
    data[0, :1024] = 255  # image 0: pure red (first plane)
    data[1, 2048:] = 255  # image 1: pure blue (third plane)
    write_cifar_batch(tmp_path / "data_batch_1", data, [0, 1])
    ds = load_cifar10(tmp_path, n_train=2)
    raw = raw_inputs(ds.x_train, ds.meta)
    assert raw.shape == (2, 3, 32, 32)
    assert np.allclose(raw[0, 0], 255, atol=1e-3) and np.allclose(raw[0, 1:], 0, atol=1e-3)
    assert np.allclose(raw[1, 2], 255, atol=1e-3) and np.allclose(raw[1, :2], 0, atol=1e-3)


def test_cifar_takes_first_n(tmp_path):
    batches = write_cifar(tmp_path)
    ds = load_cifar10(tmp_path, n_train=4, n_test=2)
    expected = batches["data_batch_1"][1] + batches["data_batch_2"][1][:1]
    assert ds.y_train.tolist() == expected and ds.y_test.tolist() == batches["test_batch"][1][:2]


def test_cifar_missing_files_are_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path)
    message = str(info.value)
    assert "data_batch_4" in message and "test_batch" in message and str(tmp_path) in message
    assert re.search(r"put (.*?) in ", message).group(1) == "data_batch_4, test_batch"


def test_cifar_without_data_dir():
    with pytest.raises(DataError, match="data_dir"):
        load_cifar10(None)


class _Exploit:
    """Unpickling this would run a shell command (it only creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_code_in_pickles(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_1").open("wb") as fh:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, fh, protocol=2)
    with pytest.raises(DataError, match="refusing"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar_wrong_layout(tmp_path):
    write_cifar(tmp_path)
    write_cifar_batch(tmp_path / "test_batch", np.zeros((2, 100), dtype=np.uint8), [0, 1])
    with pytest.raises(DataError, match="3072"):
        load_cifar10(tmp_path)


# --- load_dataset ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, task, n_outputs, input_shape",
    [
        ("spirals", "classification", 2, (2,)),
        ("circles", "classification", 2, (2,)),
        ("xor", "classification", 2, (2,)),
        ("gaussians", "classification", 2, (2,)),
        ("teacher", "regression", 1, (10,)),
        ("digits", "classification", 10, (1, 8, 8)),
        ("mnist1d", "classification", 10, (40,)),
    ],
)
def test_load_dataset_offline(name, task, n_outputs, input_shape):
    cfg = RunConfig(dataset=name, n_train=120, n_test=40, dtype="float64")
    ds = load_dataset(cfg)
    assert ds.name == name and ds.task == task == cfg.task
    assert ds.n_outputs == n_outputs and ds.input_shape == input_shape
    assert ds.x_train.shape == (120, *input_shape) and ds.x_test.shape == (40, *input_shape)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float64
    assert ds.x_train.device.type == "cpu"
    expected_y = torch.float64 if task == "regression" else torch.int64
    assert ds.y_train.dtype == ds.y_test.dtype == expected_y


def test_load_dataset_uses_config_seed_and_noise():
    base = RunConfig(dataset="spirals", n_train=100, n_test=20)
    assert torch.equal(load_dataset(base).x_train, load_dataset(base).x_train)
    assert not torch.equal(load_dataset(base).x_train, load_dataset(base.replace(seed=1)).x_train)
    assert not torch.equal(load_dataset(base).x_train, load_dataset(base.replace(noise=0.4)).x_train)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_load_dataset_from_files(tmp_path, name):
    write_mnist(tmp_path, gz=True) if name == "mnist" else write_cifar(tmp_path)
    ds = load_dataset(RunConfig(dataset=name, data_dir=str(tmp_path), n_train=4, n_test=2, dtype="float64"))
    assert ds.x_train.dtype == torch.float64 and len(ds.y_train) == 4 and len(ds.y_test) == 2
    assert ds.input_shape == ((1, 28, 28) if name == "mnist" else (3, 32, 32))

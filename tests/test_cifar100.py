"""CIFAR-100 from its original python files (``train``, ``test``, ``meta``), written here in the real
format: dicts pickled with protocol 2 holding b'data' (N, 3072) uint8 and b'fine_labels'."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from bpviz.config import ConfigError, RunConfig
from bpviz.data import DataError, load_cifar100, load_dataset


def write_file(path: Path, content: dict) -> None:
    with path.open("wb") as fh:
        pickle.dump(content, fh, protocol=2)


def write_cifar100(folder: Path, n_train: int = 6, n_test: int = 4) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        files[name] = (data, fine)
        write_file(
            folder / name,
            {
                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
                b"batch_label": f"{name} batch".encode(),
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"data": data,
            },
        )
    names = [f"class_{i:02d}".encode() for i in range(100)]
    write_file(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return files


@pytest.mark.parametrize("subfolder", ["", "cifar-100-python"])
def test_cifar100_reads_the_fine_labels(tmp_path, subfolder):
    files = write_cifar100(tmp_path / subfolder if subfolder else tmp_path)
    ds = load_cifar100(tmp_path)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.n_outputs == 100 and ds.meta["classes"][7] == "class_07"
    assert ds.y_train.tolist() == files["train"][1] and ds.y_test.tolist() == files["test"][1]
    norm = ds.meta["normalization"]
    mean, std = np.array(norm["mean"]).reshape(1, 3, 1, 1), np.array(norm["std"]).reshape(1, 3, 1, 1)
    raw = (ds.x_train.numpy() * std + mean) / norm["scale"]
    assert np.allclose(raw.reshape(6, 3072), files["train"][0], atol=1e-3)  # red, green, blue planes


def test_cifar100_through_a_config_takes_the_first_n(tmp_path):
    files = write_cifar100(tmp_path)
    ds = load_dataset(RunConfig(dataset="cifar100", data_dir=str(tmp_path), n_train=3, n_test=2, arch="cnn"))
    assert ds.y_train.tolist() == files["train"][1][:3] and ds.y_test.tolist() == files["test"][1][:2]


def test_cifar100_missing_files_are_named(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "meta").unlink()
    with pytest.raises(DataError) as info:
        load_cifar100(tmp_path)
    assert re.search(r"put (.*?) in ", str(info.value)).group(1) == "meta"
    assert "cifar-100-python.tar.gz" in str(info.value)
    with pytest.raises(DataError, match="data_dir"):
        load_cifar100(None)


def test_cifar100_refuses_wrong_files(tmp_path):
    write_cifar100(tmp_path)
    good = (tmp_path / "test").read_bytes()
    # a CIFAR-10 batch under the CIFAR-100 name: labels under b'labels', not b'fine_labels'
    write_file(tmp_path / "test", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"test: expected b'fine_labels'"):
        load_cifar100(tmp_path)
    (tmp_path / "test").write_bytes(good)
    write_file(tmp_path / "train", {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [100]})
    with pytest.raises(DataError, match=r"0\.\.99"):
        load_cifar100(tmp_path)
    write_cifar100(tmp_path)
    write_file(tmp_path / "meta", {b"fine_label_names": [b"x"] * 10})
    with pytest.raises(DataError, match="100 names"):
        load_cifar100(tmp_path)
    (tmp_path / "meta").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="meta is not a valid CIFAR-100 meta file"):
        load_cifar100(tmp_path)


def test_vgg13_and_augment_name_what_they_need():
    with pytest.raises(ConfigError, match=r"arch: 'vgg13' needs 32x32 images \(cifar10, cifar100\)"):
        RunConfig(arch="vgg13", depth=10, dataset="digits")
    with pytest.raises(ConfigError, match="depth: arch 'vgg13' has 10 blocks; got depth 4"):
        RunConfig(arch="vgg13", dataset="cifar100")
    with pytest.raises(ConfigError, match="augment: crops and flips images"):
        RunConfig(augment=True)
    with pytest.raises(ConfigError, match="lr_schedule: got 'linear'; allowed: .*'cosine'"):
        RunConfig(lr_schedule="linear")

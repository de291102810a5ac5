"""MNIST idx parsing against well-known facts and the raw bytes."""

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from bayesfn.data import MNISTData, load_mnist

# From shared/data/README.md (and the standard MNIST statistics).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TRAIN_LABELS_MD5 = "a25bea736e30d166cdddb491f175f624"


@pytest.fixture(scope="module")
def train(data_root) -> MNISTData:
    return load_mnist("train")


@pytest.fixture(scope="module")
def mnist_test(data_root) -> MNISTData:
    return load_mnist("test")


def test_train_shapes_and_values(train):
    images, labels = train
    assert images.shape == (60000, 784) and images.dtype == torch.float32
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels[0].item() == 5  # the famous first training digit
    counts = torch.bincount(labels, minlength=10).tolist()
    assert counts == TRAIN_COUNTS and sum(counts) == 60000


def test_test_shapes_and_values(mnist_test):
    images, labels = mnist_test
    assert images.shape == (10000, 784) and labels.shape == (10000,)
    assert labels[0].item() == 7  # the first test digit is a 7
    assert torch.bincount(labels, minlength=10).sum().item() == 10000
    assert set(labels.unique().tolist()) == set(range(10))


def test_pixels_equal_the_raw_bytes(train, data_root):
    with gzip.open(data_root / "mnist" / "train-images-idx3-ubyte.gz", "rb") as f:
        header = f.read(16)
        first = np.frombuffer(f.read(784 * 2), dtype=np.uint8)
    assert struct.unpack(">IIII", header) == (2051, 60000, 28, 28)
    np.testing.assert_array_equal(
        (train.images[:2] * 255).round().to(torch.uint8).numpy().reshape(-1), first
    )
    with gzip.open(data_root / "mnist" / "train-labels-idx1-ubyte.gz", "rb") as f:
        raw_labels = f.read()
    assert hashlib.md5(raw_labels).hexdigest() == TRAIN_LABELS_MD5
    np.testing.assert_array_equal(train.labels.numpy(), np.frombuffer(raw_labels[8:], np.uint8))


def test_unflattened_limited_and_raw(train):
    images, labels = load_mnist("train", flatten=False, limit=7)
    assert images.shape == (7, 1, 28, 28) and labels.shape == (7,)
    assert torch.equal(images.reshape(7, 784), train.images[:7])
    assert torch.equal(labels, train.labels[:7])
    raw, _ = load_mnist("train", normalize=False, dtype=torch.uint8, limit=3)
    assert raw.dtype == torch.uint8 and raw.max().item() == 255
    assert torch.equal(raw.to(torch.float32) / 255, train.images[:3])


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid")
    with pytest.raises(ValueError, match="limit"):
        load_mnist("test", limit=0)
    with pytest.raises(ValueError, match="normalize"):
        load_mnist("test", dtype=torch.uint8)


def _fake_mnist(tmp_path, images: bytes, labels: bytes, compress=True):
    folder = tmp_path / "mnist"
    folder.mkdir(exist_ok=True)
    for name, payload in (
        ("t10k-images-idx3-ubyte.gz", images),
        ("t10k-labels-idx1-ubyte.gz", labels),
    ):
        (folder / name).write_bytes(gzip.compress(payload) if compress else payload)


def _images(n, magic=2051, extra=b""):
    return struct.pack(">IIII", magic, n, 28, 28) + bytes(784 * n) + extra


def _labels(n, magic=2049):
    return struct.pack(">II", magic, n) + bytes(range(n))


def test_tiny_valid_files_parse(tmp_path):
    _fake_mnist(tmp_path, _images(3), _labels(3))
    images, labels = load_mnist("test", root=tmp_path)
    assert images.shape == (3, 784) and labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("images", "labels", "compress", "match"),
    [
        (_images(3, magic=2049), _labels(3), True, "magic"),
        (_images(3), _labels(3, magic=2051), True, "magic"),
        (_images(3)[:-10], _labels(3), True, "truncated"),
        (_images(3, extra=b"x"), _labels(3), True, "after"),
        (_images(3), _labels(2), True, "3 images but"),
        (_images(3), _labels(3), False, "gzip"),
    ],
)
def test_corrupt_files_raise(tmp_path, images, labels, compress, match):
    _fake_mnist(tmp_path, images, labels, compress)
    with pytest.raises(ValueError, match=match):
        load_mnist("test", root=tmp_path)


def test_missing_file_is_named(tmp_path):
    _fake_mnist(tmp_path, _images(1), _labels(1))
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_mnist("test", root=tmp_path)

"""IDX files (MNIST, Fashion-MNIST), on tiny files written in the real format."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import idx_bytes, write_idx, write_idx_set

from resnetlab.data import DataSplits, load_dataset, read_idx
from resnetlab.errors import ResnetlabError

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.usefixtures("isolated")

# --------------------------------------------------------------------------------------------------
# Reading one file


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gz_and_raw(tmp_path, gz):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    write_idx(path, array, compress=gz)
    out = read_idx(path)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 4)
    assert torch.equal(out, torch.from_numpy(array.astype(np.uint8)))


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x08\x03\x00\x01" + bytes(8))
    with pytest.raises(ResnetlabError, match="bad-idx1-ubyte: not an IDX file"):
        read_idx(path)


def test_read_idx_truncated(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ResnetlabError, match=r"train-images-idx3-ubyte.gz: .*truncated"):
        read_idx(path)


def test_read_idx_cut_gzip_stream(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10, 28, 28))))[:-30])
    with pytest.raises(ResnetlabError, match="damaged gzip"):
        read_idx(path)


def test_read_idx_unsupported_type(tmp_path):
    path = tmp_path / "floats-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">i", 1) + bytes(4))
    with pytest.raises(ResnetlabError, match="type 0x0d is not supported"):
        read_idx(path)

# --------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST splits


@pytest.mark.parametrize("layout,gz", [("mnist", True), ("MNIST/raw", False), (".", True)])
def test_load_mnist_layouts(tmp_path, layout, gz):
    root = tmp_path / "data"
    arrays = write_idx_set(root / layout, gz=gz)
    splits = load_dataset("mnist", data_dir=root, download=False)
    assert isinstance(splits, DataSplits) and splits.name == "mnist"
    assert splits.train.images.shape == (12, 1, 28, 28) and splits.test.images.shape == (5, 1, 28, 28)
    assert splits.train.labels.dtype == torch.int64
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(
        arrays["train-images-idx3-ubyte"].astype(np.uint8)))
    assert splits.classes == [str(d) for d in range(10)]
    assert Path(splits.source) == root / layout


def test_fashion_mnist_torchvision_layout_and_spelling(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw")
    splits = load_dataset("FashionMNIST", data_dir=tmp_path, download=False)
    assert splits.name == "fashion-mnist" and splits.classes[0] == "T-shirt/top"


def test_idx_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path / "mnist")
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(ResnetlabError, match="do not belong together"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


@pytest.mark.skipif(not FASHION_DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian():
    splits = load_dataset("fashion-mnist", data_dir=FASHION_DEBIAN, download=False)
    assert splits.train.images.shape == (60000, 1, 28, 28) and splits.test.images.shape == (10000, 1, 28, 28)
    assert len(splits.classes) == 10
    assert splits.train.labels.bincount().tolist() == [6000] * 10
    assert int(splits.test.labels.min()) == 0 and int(splits.test.labels.max()) == 9

"""CIFAR-10/100 python pickles, from a folder or the official archive, on tiny files written in the
real format."""

import io
import os
import pickle
from pathlib import Path

import pytest
from fakedata import check_cifar10, cifar_batch, tar_folder, write_cifar10, write_pickle

from resnetlab.data import load_dataset, locate, read_cifar_batch
from resnetlab.errors import ResnetlabError

pytestmark = pytest.mark.usefixtures("isolated")

# --------------------------------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100


def test_cifar10_folder(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path, download=False))


def test_cifar10_read_from_the_official_archive(tmp_path):
    write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    top = "cifar-10-batches-py"
    tar_folder(tmp_path / "src" / top, root / "cifar-10-python.tar.gz", top)
    assert locate("cifar10", root) == root / "cifar-10-python.tar.gz"
    splits = load_dataset("cifar-10", data_dir=root, download=False)
    check_cifar10(splits)
    assert not (root / "cifar-10-batches-py").exists()  # read in place, not extracted


def test_cifar10_archive_missing_member(tmp_path):
    write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    tar_folder(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz",
               "cifar-10-batches-py")
    with pytest.raises(ResnetlabError, match="lacks cifar-10-batches-py/test_batch"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_cifar100_with_str_keys(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    fine = dict(label_key=b"fine_labels", num_classes=100, str_keys=True)
    write_pickle(folder / "train", cifar_batch(7, 1, **fine))
    write_pickle(folder / "test", cifar_batch(3, 2, **fine))
    write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                           "coarse_label_names": [f"s{i}" for i in range(20)]})
    splits = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert len(splits.classes) == 100 and splits.classes[3] == "c3"
    assert len(splits.train) == 7 and len(splits.test) == 3
    assert splits.train.labels.tolist() == list(range(7))

# --------------------------------------------------------------------------------------------------
# One batch file


def test_cifar_batch_with_wrong_shape(tmp_path):
    batch = cifar_batch(2, 0)
    batch[b"data"] = batch[b"data"][:, :1024]
    write_pickle(tmp_path / "data_batch_1", batch)
    with pytest.raises(ResnetlabError, match=r"data_batch_1: 'data' must be uint8 N x 3072"):
        read_cifar_batch(tmp_path / "data_batch_1")


def test_cifar_batch_without_labels(tmp_path):
    batch = cifar_batch(2, 0)
    del batch[b"labels"]
    write_pickle(tmp_path / "b", batch)
    with pytest.raises(ResnetlabError, match="lack 'data' or 'labels'"):
        read_cifar_batch(tmp_path / "b")


def test_read_cifar_batch_from_file_object():
    images, labels = read_cifar_batch(io.BytesIO(pickle.dumps(cifar_batch(2, 0), protocol=2)))
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 1]


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    batch = {b"data": _Evil(marker), b"labels": [0]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ResnetlabError, match="refusing to unpickle.*system"):
        read_cifar_batch(path)
    assert not marker.exists()


def test_garbage_is_not_a_pickle(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(ResnetlabError, match="test_batch: not a CIFAR python pickle"):
        read_cifar_batch(tmp_path / "test_batch")

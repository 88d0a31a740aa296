"""Containers, finding, listing and downloading the known data sets, and load_dataset's dispatch."""

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from fakedata import check_cifar10, tar_folder, write_cifar10, write_idx_set

from resnetlab.data import ImageSet, fetch, list_sources, load_dataset, locate
from resnetlab.data import known as sources
from resnetlab.errors import ResnetlabError

pytestmark = pytest.mark.usefixtures("isolated")

# --------------------------------------------------------------------------------------------------
# ImageSet


def test_imageset_subset_and_len():
    s = ImageSet(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.arange(6), ["a"])
    assert len(s) == 6
    part = s.subset(slice(0, 6, 2))
    assert len(part) == 3 and part.images.is_contiguous() and part.labels.tolist() == [0, 2, 4]
    assert s.subset(torch.tensor([5, 1])).labels.tolist() == [5, 1]


def test_imageset_rejects_wrong_dtypes():
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 2, 2), torch.arange(2), ["a"])
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.arange(3), ["a"])

# --------------------------------------------------------------------------------------------------
# Search order, listing, download


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    given, env, cache = tmp_path / "given", tmp_path / "env", tmp_path / "xdg" / "resnetlab"
    for root in (given, env, cache):
        write_idx_set(root / "mnist")
    monkeypatch.setenv("RESNETLAB_DATA", str(env))
    assert locate("mnist", given) == given / "mnist"
    assert locate("mnist") == env / "mnist"
    monkeypatch.delenv("RESNETLAB_DATA")
    assert locate("mnist") == cache / "mnist"
    shutil.rmtree(cache / "mnist")
    assert locate("mnist") is None


def test_home_cache_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_idx_set(tmp_path / "home" / ".cache" / "resnetlab" / "mnist")
    assert locate("mnist") == tmp_path / "home" / ".cache" / "resnetlab" / "mnist"


def test_system_root(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "system" / "fashion-mnist")
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", (tmp_path / "system",))
    assert locate("fashion-mnist") == tmp_path / "system" / "fashion-mnist"
    assert locate("mnist") is None  # not the same files under another name


def test_list_sources(tmp_path):
    write_idx_set(tmp_path / "mnist")
    rows = {r["name"]: r for r in list_sources(tmp_path)}
    assert set(rows) == {"mnist", "fashion-mnist", "cifar10", "cifar100"}
    assert rows["mnist"]["found"] and rows["mnist"]["path"] == str(tmp_path / "mnist")
    assert not rows["cifar10"]["found"] and rows["cifar10"]["path"] is None
    assert rows["cifar10"]["searched"][:2] == [str(tmp_path), str(tmp_path / "xdg" / "resnetlab")]


def test_unknown_name():
    with pytest.raises(ResnetlabError, match="unknown data set 'imagenet'"):
        fetch("imagenet")


def test_offline_fetch_is_one_clear_error(tmp_path):
    with pytest.raises(ResnetlabError) as e:
        fetch("fashion-mnist", tmp_path / "data")
    message = str(e.value)
    assert "\n" not in message and "cannot download fashion-mnist" in message
    assert str(tmp_path / "data") in message and "apt-get install dataset-fashion-mnist" in message
    assert not list((tmp_path / "data").rglob("*.part"))


def test_missing_without_download(tmp_path):
    with pytest.raises(ResnetlabError, match="cifar100 not found in .*resnetlab data fetch cifar100"):
        load_dataset("cifar100", data_dir=tmp_path, download=False)


def serve_from(folder: Path, calls: list):
    def download(url, dest):
        calls.append(url)
        shutil.copy(folder / url.rsplit("/", 1)[1], dest)
    return download


def with_md5s(monkeypatch, folder: Path, name="mnist", wrong=False):
    """Point the known data set at md5s of the local files (or wrong ones)."""
    known = sources._KNOWN[name]
    md5s = tuple((f, "0" * 32 if wrong else hashlib.md5((folder / f).read_bytes()).hexdigest())
                 for f, _ in known.downloads)
    monkeypatch.setitem(sources._KNOWN, name, dataclasses.replace(known, downloads=md5s))


def test_fetch_downloads_checks_md5_and_loads(tmp_path, monkeypatch):
    served = tmp_path / "server"
    write_idx_set(served)
    calls = []
    monkeypatch.setattr(sources, "_download_file", serve_from(served, calls))
    with_md5s(monkeypatch, served)
    path = fetch("mnist", tmp_path / "data")
    assert path == tmp_path / "data" / "mnist" and len(calls) == 4
    assert calls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert fetch("mnist", tmp_path / "data") == path and len(calls) == 4  # present: no new download
    assert len(load_dataset("mnist", data_dir=tmp_path / "data").train) == 12


def test_load_dataset_downloads_when_missing(tmp_path, monkeypatch):
    served = tmp_path / "server"
    write_cifar10(served / "cifar-10-batches-py")
    tar_folder(served / "cifar-10-batches-py", served / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    calls = []
    monkeypatch.setattr(sources, "_download_file", serve_from(served, calls))
    with_md5s(monkeypatch, served, "cifar10")
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path / "data"))
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert (tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz").is_file()


def test_fetch_checksum_mismatch(tmp_path, monkeypatch):
    served = tmp_path / "server"
    write_idx_set(served)
    monkeypatch.setattr(sources, "_download_file", serve_from(served, []))
    with_md5s(monkeypatch, served, wrong=True)
    with pytest.raises(ResnetlabError) as e:
        fetch("mnist", tmp_path / "data")
    message = str(e.value)
    actual = hashlib.md5((served / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    assert "train-images-idx3-ubyte.gz" in message and actual in message and "0" * 32 in message
    assert "retry" in message and "by hand" in message
    assert not list((tmp_path / "data" / "mnist").iterdir())  # nothing half-downloaded left behind


# --------------------------------------------------------------------------------------------------
# The entry point


def test_known_data_set_image_size(tmp_path):
    write_idx_set(tmp_path / "mnist")
    splits = load_dataset("mnist", data_dir=tmp_path, download=False, image_size=32)
    assert splits.train.images.shape == (12, 1, 32, 32) and splits.test.images.shape == (5, 1, 32, 32)

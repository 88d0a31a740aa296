"""Readers for the known data sets and image folders, on tiny files written in the real formats."""

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import time
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import (
    DataSplits,
    ImageSet,
    decode_image,
    fetch,
    list_sources,
    load_dataset,
    locate,
    read_cifar_batch,
    read_idx,
    scan_image_folder,
    sources,
)
from resnetlab.errors import ResnetlabError

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
CIFAR_JPEG = Path("/work/shared/data/cifar10-jpeg.tar.gz")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No network, no system data, a private cache: tests see only what they write."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RESNETLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", ())

    def offline(url, dest):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(sources, "_download_file", offline)


# --------------------------------------------------------------------------------------------------
# Writers for the real on-disk formats


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_idx_set(folder: Path, n_train=12, n_test=5, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for stem, array in arrays.items():
        write_idx(folder / stem, array, gz=gz)
    return arrays


def cifar_batch(n: int, seed: int, label_key=b"labels", num_classes=10, str_keys=False) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", label_key: [int(i % num_classes) for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official files are protocol-2 pickles


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(folder: Path, per_batch=3, n_test=4) -> None:
    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", cifar_batch(per_batch, seed=i))
    dump(folder / "test_batch", cifar_batch(n_test, seed=9))
    dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                   b"num_cases_per_batch": per_batch, b"num_vis": 3072})


def tar_folder(folder: Path, archive: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def image_bytes(mode="RGB", size=(6, 4), fmt="PNG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_image(path: Path, mode="RGB", size=(6, 4), fmt="PNG", seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(mode, size, fmt, seed))
    return path


def write_class_folder(root: Path, classes: dict[str, int], prefix="", ext="png", fmt="PNG",
                       mode="RGB", size=(6, 4)) -> None:
    for c, n in classes.items():
        for i in range(n):
            seed = zlib.crc32(f"{c}{i}".encode())
            write_image(root / prefix / c / f"{i:03d}.{ext}", mode, size, fmt, seed)


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
# IDX


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_gz_and_raw(tmp_path, gz):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = write_idx(tmp_path / "x-idx3-ubyte", array, gz=gz)
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
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ResnetlabError, match="do not belong together"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------------------------------
# CIFAR


def check_cifar10(splits: DataSplits, folder_batch: Path | None = None):
    assert splits.name == "cifar10" and splits.classes == CIFAR10_NAMES
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.test.images.shape == (4, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    # Row 0 of data_batch_1: bytes 0..1023 are the red plane, row-major.
    first = cifar_batch(3, seed=1)[b"data"][0]
    assert torch.equal(splits.train.images[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))
    assert torch.equal(splits.train.images[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))
    assert splits.train.labels[:3].tolist() == [0, 1, 2]


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
    dump(folder / "train", cifar_batch(7, 1, label_key=b"fine_labels", num_classes=100, str_keys=True))
    dump(folder / "test", cifar_batch(3, 2, label_key=b"fine_labels", num_classes=100, str_keys=True))
    dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                           "coarse_label_names": [f"s{i}" for i in range(20)]})
    splits = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert len(splits.classes) == 100 and splits.classes[3] == "c3"
    assert len(splits.train) == 7 and len(splits.test) == 3
    assert splits.train.labels.tolist() == list(range(7))


def test_cifar_batch_with_wrong_shape(tmp_path):
    batch = cifar_batch(2, 0)
    batch[b"data"] = batch[b"data"][:, :1024]
    dump(tmp_path / "data_batch_1", batch)
    with pytest.raises(ResnetlabError, match=r"data_batch_1: 'data' must be uint8 N x 3072"):
        read_cifar_batch(tmp_path / "data_batch_1")


def test_cifar_batch_without_labels(tmp_path):
    batch = cifar_batch(2, 0)
    del batch[b"labels"]
    dump(tmp_path / "b", batch)
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
# Decoding single images


@pytest.mark.parametrize("mode,fmt,channels", [
    ("L", "PNG", 1), ("LA", "PNG", 1), ("1", "PNG", 1), ("RGB", "PNG", 3), ("RGBA", "PNG", 3),
    ("P", "PNG", 3), ("L", "JPEG", 1), ("RGB", "JPEG", 3), ("CMYK", "JPEG", 3), ("RGB", "GIF", 3),
    ("RGB", "WEBP", 3), ("RGB", "BMP", 3), ("L", "BMP", 1), ("RGB", "TIFF", 3), ("L", "TIFF", 1),
])
def test_decode_image_channels(mode, fmt, channels):
    image = decode_image(image_bytes(mode, (6, 4), fmt), f"x.{fmt.lower()}")
    assert image.dtype == torch.uint8 and image.shape == (channels, 4, 6)


def test_decode_palette_gives_the_colours_not_the_indices():
    buffer = io.BytesIO()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8))
    palette = rgb.convert("P")
    palette.save(buffer, "PNG")
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_image(buffer.getvalue()), expected)


def test_decode_16_bit_png():
    buffer = io.BytesIO()
    Image.fromarray(np.full((3, 3), 0xABCD, dtype=np.uint16)).save(buffer, "PNG")
    image = decode_image(buffer.getvalue())
    assert image.shape == (1, 3, 3) and image.dtype == torch.uint8 and int(image[0, 0, 0]) == 0xAB


def test_decode_corrupt_image():
    with pytest.raises(ResnetlabError, match="bad.png: cannot decode"):
        decode_image(b"\x89PNG\r\n\x1a\n not really", "bad.png")


# --------------------------------------------------------------------------------------------------
# Image folders


def test_png_folder_with_train_and_val(tmp_path):
    write_class_folder(tmp_path / "set", {"zebra": 3, "ant": 2}, prefix="train")
    write_class_folder(tmp_path / "set", {"zebra": 1, "ant": 2}, prefix="val")
    (tmp_path / "set" / "train" / "ant" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "set" / "train" / "ant" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "set" / "train" / ".hidden" / "x.png")
    splits = load_dataset(str(tmp_path / "set"), data_dir=tmp_path / "cache")
    assert splits.classes == ["ant", "zebra"] and splits.name == str(tmp_path / "set")
    assert splits.train.images.shape == (5, 3, 4, 6) and splits.test.images.shape == (3, 3, 4, 6)
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 1] and splits.test.labels.tolist() == [0, 0, 1]
    expected = decode_image((tmp_path / "set" / "train" / "zebra" / "000.png").read_bytes())
    assert torch.equal(splits.train.images[2], expected)


def test_test_folder_counts_as_validation(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2}, prefix="train")
    write_class_folder(tmp_path / "set", {"a": 1}, prefix="test")
    index = scan_image_folder(tmp_path / "set")
    assert index.classes == ["a", "b"] and len(index.train) == 4 and len(index.test) == 1


def test_flat_folder_split_by_fraction(tmp_path):
    write_class_folder(tmp_path / "flat", {"cat": 20, "dog": 10, "owl": 2}, ext="PNG")
    a = load_dataset(tmp_path / "flat", data_dir=tmp_path / "c", split_fraction=0.2, seed=1)
    assert len(a.train) + len(a.test) == 32
    assert a.test.labels.bincount().tolist() == [4, 2, 1]  # at least one per class
    b = scan_image_folder(tmp_path / "flat", split_fraction=0.2, seed=1)
    c = scan_image_folder(tmp_path / "flat", split_fraction=0.2, seed=2)
    assert [k for k, _ in b.test] == [k for k, _ in scan_image_folder(tmp_path / "flat", 0.2, 1).test]
    assert [k for k, _ in b.test] != [k for k, _ in c.test]
    assert not {k for k, _ in b.train} & {k for k, _ in b.test}


def test_split_fraction_out_of_range(tmp_path):
    write_class_folder(tmp_path / "flat", {"a": 2})
    with pytest.raises(ResnetlabError, match="split fraction"):
        scan_image_folder(tmp_path / "flat", split_fraction=1.5)


def test_jpeg_folder_in_a_tar_gz(tmp_path):
    src = tmp_path / "src"
    write_class_folder(src, {"b": 2, "a": 3}, prefix="train", ext="jpg", fmt="JPEG", size=(8, 8))
    write_class_folder(src, {"b": 1, "a": 1}, prefix="test", ext="JPG", fmt="JPEG", size=(8, 8))
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="myset")  # a wrapping folder, as archives often have
        odd = tarfile.TarInfo("myset/test//")  # the real CIFAR-10 JPEG archive has such an entry
        odd.type = tarfile.DIRTYPE
        tar.addfile(odd)
    splits = load_dataset(str(archive), data_dir=tmp_path / "c")
    assert splits.classes == ["a", "b"] and splits.source == str(archive.resolve())
    assert splits.train.images.shape == (5, 3, 8, 8) and splits.test.labels.tolist() == [0, 1]
    expected = decode_image((src / "train" / "a" / "000.jpg").read_bytes())
    assert torch.equal(splits.train.images[0], expected)


def test_folder_index_is_picklable_and_reads_archive_members(tmp_path):
    write_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    archive = tar_folder(tmp_path / "src", tmp_path / "set.tgz", ".")
    index = scan_image_folder(archive)
    index.read_bytes(index.train[0][0])  # opens a handle, which must not be pickled
    clone = pickle.loads(pickle.dumps(index))
    assert clone.archive == str(archive.resolve())
    for key, label in reversed(index.train + index.test):  # out of order works too
        name = key.rsplit("/", 2)
        assert clone.read_bytes(key) == (tmp_path / "src" / name[1] / name[2]).read_bytes()
        assert label == index.classes.index(name[1])
    assert len(dict(clone.iter_bytes(k for k, _ in clone.train))) == len(clone.train)


def test_folder_index_of_a_directory(tmp_path):
    write_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    index = pickle.loads(pickle.dumps(scan_image_folder(tmp_path / "src", split_fraction=0.5)))
    assert index.archive is None and Path(index.train[0][0]).is_absolute()
    assert index.read_bytes(index.train[0][0])[:4] == b"\x89PNG"


def test_mixed_sizes_become_default_squares(tmp_path):
    write_image(tmp_path / "set" / "a" / "wide.png", size=(30, 10))
    write_image(tmp_path / "set" / "b" / "tall.png", size=(10, 20))
    splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0)
    assert splits.train.images.shape == (2, 3, 256, 256) and len(splits.test) == 0
    assert splits.test.images.shape == (0, 3, 256, 256)


def test_image_size_resizes_and_crops(tmp_path):
    write_image(tmp_path / "set" / "a" / "wide.png", size=(30, 10))
    write_image(tmp_path / "set" / "a" / "same.png", size=(30, 10))
    splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0, image_size=8)
    assert splits.train.images.shape == (2, 3, 8, 8)


def test_known_data_set_image_size(tmp_path):
    write_idx_set(tmp_path / "mnist")
    splits = load_dataset("mnist", data_dir=tmp_path, download=False, image_size=32)
    assert splits.train.images.shape == (12, 1, 32, 32) and splits.test.images.shape == (5, 1, 32, 32)


def test_grayscale_stays_one_channel_only_if_all_are(tmp_path):
    write_class_folder(tmp_path / "gray", {"a": 2, "b": 2}, mode="L")
    assert load_dataset(tmp_path / "gray", data_dir=tmp_path / "c").train.images.shape[1] == 1
    write_image(tmp_path / "mixed" / "a" / "gray.png", mode="L")
    write_image(tmp_path / "mixed" / "a" / "rgba.png", mode="RGBA")
    write_image(tmp_path / "mixed" / "b" / "palette.png", mode="P")
    write_image(tmp_path / "mixed" / "b" / "gray_alpha.png", mode="LA")
    splits = load_dataset(tmp_path / "mixed", data_dir=tmp_path / "c", split_fraction=0)
    assert splits.train.images.shape == (4, 3, 4, 6)
    gray = splits.train.images[0]  # a/gray.png sorts first: its three channels are equal
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_a_few_corrupt_images_are_skipped_with_a_warning(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 60, "b": 60}, size=(2, 2))
    (tmp_path / "set" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(UserWarning, match=r"skipped 1 of 121 .*broken.png"):
        splits = load_dataset(tmp_path / "set", data_dir=tmp_path / "c", split_fraction=0)
    assert len(splits.train) == 120


def test_many_corrupt_images_are_an_error(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, size=(2, 2))
    (tmp_path / "set" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ResnetlabError, match=r"1 of 7 images cannot be decoded \(.*broken.jpg\)"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_empty_class_is_an_error(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2})
    (tmp_path / "set" / "b").mkdir()
    (tmp_path / "set" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(ResnetlabError, match="class folder 'b' has no images"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_folder_without_classes_is_an_error(tmp_path):
    write_image(tmp_path / "loose" / "x.png")
    write_image(tmp_path / "loose" / "y.png")
    with pytest.raises(ResnetlabError, match="no class sub-folders.*<folder>/<class>/<image>"):
        load_dataset(tmp_path / "loose", data_dir=tmp_path / "c")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ResnetlabError, match="no such folder or archive"):
        load_dataset(str(tmp_path / "nope"))


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "set", {"a": 3, "b": 3}, prefix="train")
    write_class_folder(tmp_path / "set", {"a": 1, "b": 1}, prefix="val")
    first = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert len(list((tmp_path / "c" / "folders").glob("*.safetensors"))) == 1

    def fail(data, name=""):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(sources, "decode_image", fail)
    second = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert torch.equal(first.train.images, second.train.images)
    assert torch.equal(first.test.labels, second.test.labels) and second.classes == ["a", "b"]
    # A changed file changes the key: decoded again.
    write_image(tmp_path / "set" / "train" / "a" / "new.png", seed=5)
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(tmp_path / "set", data_dir=tmp_path / "c")


def test_archive_cache_skips_even_the_listing(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    archive = tar_folder(tmp_path / "src", tmp_path / "set.tar.gz", "set")
    first = load_dataset(archive, data_dir=tmp_path / "c", split_fraction=0.5)
    monkeypatch.setattr(sources, "scan_image_folder", lambda *a, **k: pytest.fail("archive listed again"))
    second = load_dataset(archive, data_dir=tmp_path / "c", split_fraction=0.5)
    assert torch.equal(first.train.images, second.train.images)


def test_corrupt_cache_is_rebuilt(tmp_path):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2})
    first = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    (cache_file,) = (tmp_path / "c" / "folders").glob("*.safetensors")
    cache_file.write_bytes(b"garbage")
    second = load_dataset(tmp_path / "set", data_dir=tmp_path / "c")
    assert torch.equal(first.train.images, second.train.images)
    assert cache_file.stat().st_size > 100  # rewritten


def test_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    write_class_folder(tmp_path / "set", {"a": 2, "b": 2})
    monkeypatch.setattr(sources, "_first_writable", lambda roots: None)
    assert len(load_dataset(tmp_path / "set", data_dir=tmp_path / "c").train) == 2
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------------------------------
# The real data sets, where this machine has them


@pytest.mark.skipif(not FASHION_DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian():
    splits = load_dataset("fashion-mnist", data_dir=FASHION_DEBIAN, download=False)
    assert splits.train.images.shape == (60000, 1, 28, 28) and splits.test.images.shape == (10000, 1, 28, 28)
    assert len(splits.classes) == 10
    assert splits.train.labels.bincount().tolist() == [6000] * 10
    assert int(splits.test.labels.min()) == 0 and int(splits.test.labels.max()) == 9


@pytest.mark.skipif(not CIFAR_JPEG.is_file(), reason="the CIFAR-10 JPEG archive is not here")
def test_real_cifar10_jpeg_archive(tmp_path):
    start = time.perf_counter()
    splits = load_dataset(str(CIFAR_JPEG), data_dir=tmp_path)
    first = time.perf_counter() - start
    assert splits.train.images.shape == (50000, 3, 32, 32) and splits.test.images.shape == (10000, 3, 32, 32)
    assert splits.classes == sorted(CIFAR10_NAMES)
    assert splits.train.labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    again = load_dataset(str(CIFAR_JPEG), data_dir=tmp_path)
    cached = time.perf_counter() - start
    assert torch.equal(again.test.images, splits.test.images)
    print(f"CIFAR-10 JPEG archive: first load {first:.1f} s, cached load {cached:.2f} s")

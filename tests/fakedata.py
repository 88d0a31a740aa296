"""Tiny data sets in the real on-disk formats, for tests. Images are learnable: each class has
its own brightness level, plus noise, which survives crops and flips, so a small net reaches high
accuracy in seconds."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def class_images(n: int, size: int = 12, channels: int = 1, classes: int = 4, seed: int = 0):
    """uint8 images N x C x size x size and labels; class k has brightness about 30 + k * 200/classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    noise = rng.integers(0, 30, (n, channels, size, size))
    images = (30 + labels[:, None, None, None].astype(int) * (200 // classes) + noise).astype(np.uint8)
    return images, labels


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def write_fashion_like(root: Path, n_train: int = 256, n_test: int = 64, size: int = 12,
                       classes: int = 4, seed: int = 0) -> Path:
    """A Fashion-MNIST-format folder `root/fashion-mnist/` (four IDX .gz files)."""
    folder = Path(root) / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = class_images(n, size, 1, classes, s)
        write_idx(folder / FASHION_FILES[split][0], images[:, 0])
        write_idx(folder / FASHION_FILES[split][1], labels)
    return folder


# --------------------------------------------------------------------------------------------------
# The reader tests' writers: MNIST-layout IDX sets, CIFAR pickles, tar archives, image folders


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes (unsigned byte elements, uncompressed)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train=12, n_test=5, gz=True, seed=0) -> dict:
    """The four MNIST files (28 x 28 random images, labels 0..9 in turn) in `folder`; returns the
    arrays by file stem."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        (folder / (f"{stem}.gz" if gz else stem)).write_bytes(
            gzip.compress(idx_bytes(array)) if gz else idx_bytes(array))
    return arrays


def cifar_batch(n: int, seed: int, label_key=b"labels", num_classes=10, str_keys=False) -> dict:
    """A CIFAR python batch as the official files hold it (bytes keys, unless str_keys)."""
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", label_key: [int(i % num_classes) for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # the official files are protocol-2 pickles


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(folder: Path, per_batch=3, n_test=4) -> None:
    """A cifar-10-batches-py folder: five training batches, the test batch and batches.meta."""
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", cifar_batch(per_batch, seed=i))
    write_pickle(folder / "test_batch", cifar_batch(n_test, seed=9))
    write_pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                           b"num_cases_per_batch": per_batch, b"num_vis": 3072})


def check_cifar10(splits) -> None:
    """Assert that `splits` (DataSplits) holds what write_cifar10 wrote with its defaults."""
    assert splits.name == "cifar10" and splits.classes == CIFAR10_NAMES
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.test.images.shape == (4, 3, 32, 32)
    assert splits.train.images.dtype == torch.uint8 and splits.train.labels.dtype == torch.int64
    # Row 0 of data_batch_1: bytes 0..1023 are the red plane, row-major.
    first = cifar_batch(3, seed=1)[b"data"][0]
    assert torch.equal(splits.train.images[0, 0], torch.from_numpy(first[:1024].reshape(32, 32)))
    assert torch.equal(splits.train.images[0, 2], torch.from_numpy(first[2048:].reshape(32, 32)))
    assert splits.train.labels[:3].tolist() == [0, 1, 2]


def tar_folder(folder: Path, archive: Path, arcname: str, gz: bool = True) -> Path:
    """`folder` archived as `archive` (gzipped unless gz=False), its contents under `arcname`."""
    with tarfile.open(archive, "w:gz" if gz else "w") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def image_bytes(mode="RGB", size=(6, 4), fmt="PNG", seed=0) -> bytes:
    """A random image of `size` (width, height) in PIL `mode`, encoded as `fmt`."""
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
    """`classes[c]` random images per class c in root/prefix/c/000.ext, 001.ext, ..., each seeded by
    its class and number (so two folders written alike hold the same images)."""
    for c, n in classes.items():
        for i in range(n):
            seed = zlib.crc32(f"{c}{i}".encode())
            write_image(root / prefix / c / f"{i:03d}.{ext}", mode, size, fmt, seed)

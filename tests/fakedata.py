"""Tiny data sets in the real on-disk formats, for tests. Images are learnable: each class has
its own brightness level, plus noise, which survives crops and flips, so a small net reaches high
accuracy in seconds."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

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

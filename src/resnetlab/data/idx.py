"""IDX files, the format of MNIST and Fashion-MNIST: raw or gzipped, checked against their header.

Readers here return plain tensors; `known` wraps them into ImageSets and knows which files make
which data set.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import ResnetlabError


def idx_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.gz` or `folder/stem`, whichever exists (the .gz first), else None."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_file_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip (by content, not by name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ResnetlabError(f"cannot read {path}: {e.strerror or e}") from None
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ResnetlabError(f"{path}: damaged gzip file ({e}); delete it and download it again") from None


def read_idx(path: str | Path) -> torch.Tensor:
    """An IDX file (raw or .gz) as a uint8 tensor of the shape its header declares."""
    path = Path(path)
    raw = _read_file_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ResnetlabError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}, "
                             f"expected 0000 then type and rank); delete it and download it again")
    if raw[2] != 0x08:
        raise ResnetlabError(f"{path}: IDX element type 0x{raw[2]:02x} is not supported, only 0x08 "
                             f"(unsigned byte, as in MNIST); convert the file to uint8")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ResnetlabError(f"{path}: IDX header is cut short; delete the file and download it again")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if min(dims, default=0) < 0 or len(raw) - header != expected:
        raise ResnetlabError(f"{path}: IDX header declares shape {tuple(dims)} ({expected} bytes) but "
                             f"the file holds {len(raw) - header}; it is truncated or damaged: delete it "
                             f"and download it again")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def load_idx_split(folder: Path, stems: tuple[str, str], num_classes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One split from its two IDX files (`stems`: images, labels; raw or .gz) in `folder`:
    images uint8 N x 1 x H x W (contiguous) and labels int64, checked to belong together."""
    image_path, label_path = (idx_file(folder, s) for s in stems)
    if image_path is None or label_path is None:
        raise ResnetlabError(f"{folder}: missing {stems[0]}(.gz) or {stems[1]}(.gz)")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ResnetlabError(f"{image_path}: expected images N x H x W, got shape {tuple(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ResnetlabError(f"{label_path}: {tuple(labels.shape)} labels for {len(images)} images in "
                             f"{image_path.name}; the two files do not belong together")
    check_label_range(labels, num_classes, label_path)
    return images.unsqueeze(1).contiguous(), labels.long()


def check_label_range(labels: torch.Tensor, num_classes: int, where) -> None:
    """Every label must name one of `num_classes` classes (shared by all the readers)."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ResnetlabError(f"{where}: labels range {int(labels.min())}..{int(labels.max())} but there "
                             f"are {num_classes} classes; the file is damaged or from another data set")

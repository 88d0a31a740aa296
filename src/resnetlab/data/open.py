"""The data layer's one entry: `open_data(spec)` turns a `--data` value into a data set's splits.

    known name (fashion-mnist, cifar10, ...)  -> known.load_known   -> idx / cifar readers
    folder or archive of class folders        -> folders.load_folder (cache, or decode) when it fits
                                                 in memory, else stream.open_stream (decoded batch
                                                 by batch in loader workers)

Either way the splits hold uint8 images and int64 labels with the same classes, order and size;
`loader_for` gives the matching batch loader and `images_for_statistics` the images normalisation
statistics are computed from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ResnetlabError
from .archive import is_archive
from .decode import fit_square
from .folders import folder_path, load_folder, scan_image_folder
from .known import canonical_name, load_known
from .loader import BatchLoader
from .splits import DataSplits
from .stream import StreamingLoader, StreamSet, StreamSplits, fits_in_memory, open_stream

log = logging.getLogger(__name__)

STREAM_MODES = ("auto", "on", "off")


def load_dataset(spec: str | Path, data_dir: str | Path | None = None, download: bool = True,
                 image_size: int | None = None, split_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Load a known data set by name, or a class-folder data set from a folder or archive path, into
    memory.

    Names: mnist, fashion-mnist, cifar10, cifar100 (spelling variants like FashionMNIST work; write
    ./cifar10 for a folder of that name). A missing known data set is downloaded if `download`.
    `image_size`, when given, resizes the shorter side and centre-crops a square; folders whose
    images differ in size get DEFAULT_IMAGE_SIZE when it is not given. Folders without train/ and
    val/ hold out `split_fraction` of each class (chosen with `seed`).
    """
    name = None if isinstance(spec, Path) else canonical_name(str(spec))
    if name is None:
        return load_folder(spec, data_dir, image_size, split_fraction, seed)
    splits = load_known(name, data_dir, download)
    if image_size:
        for s in (splits.train, splits.test):
            s.images = fit_square(s.images, image_size) if len(s) else s.images
    return splits


def open_data(spec, data_dir=None, image_size: int | None = None,
              stream: str = "auto") -> DataSplits | StreamSplits:
    """A run's data: DataSplits in memory when it fits (the known data sets always do), else
    StreamSplits decoded batch by batch. stream="on"/"off" forces the choice for folders."""
    if stream not in STREAM_MODES:
        raise ResnetlabError(f"--stream must be one of {', '.join(STREAM_MODES)}, got {stream!r}")
    known = not isinstance(spec, Path) and canonical_name(str(spec)) is not None
    if known or stream == "off":
        return load_dataset(spec, data_dir=data_dir, image_size=image_size)
    if stream == "on":
        return open_stream(spec, image_size=image_size)
    # A folder in the decoded cache fitted in memory when it was cached: an archive's key is a stat,
    # where listing it means reading all of it (minutes for 60,000 JPEGs on a busy CPU).
    path = folder_path(spec)
    index = None if is_archive(path) else scan_image_folder(path)
    cached = load_folder(spec, data_dir, image_size, index=index, cache_only=True)
    if cached is not None:
        return cached
    index = index or scan_image_folder(path)
    if fits_in_memory(index, image_size):
        return load_folder(spec, data_dir, image_size, index=index)
    log.warning("%s does not fit in memory decoded: streaming it from disk", spec)
    return open_stream(spec, image_size=image_size)


def loader_for(split, batch_size: int, **kwargs) -> BatchLoader:
    """A BatchLoader for an in-memory ImageSet, a StreamingLoader for a StreamSet."""
    if isinstance(split, StreamSet):
        return StreamingLoader(split, batch_size, **kwargs)
    return BatchLoader(split.images, split.labels, batch_size, **kwargs)


def images_for_statistics(split, n: int = 10_000) -> torch.Tensor:
    """The images normalisation statistics are computed from: all of an in-memory split, a fixed
    sample of `n` of a streamed one."""
    return split.sample_images(n) if isinstance(split, StreamSet) else split.images

"""Image folders too large for memory: images decoded batch by batch in worker processes.

`open_stream` indexes a class folder (or a .tar of one) like `load_dataset` does, but decodes nothing:
it checks every image's header (or, with check="decode", decodes and drops each image) to settle, at
open time, what the in-memory loader settles while decoding: which images are unreadable (skipped
with a counted warning, an error past MAX_BAD_FRACTION), the channel count (1 only if every image
is grayscale) and the stored size (`image_size`, else the images' common size, else
DEFAULT_IMAGE_SIZE squares). Settling it up front keeps every epoch's order, batches and length fixed.

`StreamingLoader` is a `BatchLoader` over such a split: the same order, the same per-rank batch
slices, the same per-batch augmentation generator (so a resumed run sees exactly the batches it
would have seen), but each batch's images are read, decoded, fitted to the stored size and stacked
into a uint8 tensor in `torch.utils.data.DataLoader` workers. The main process then moves the batch
to the device and augments/normalises it exactly as BatchLoader does: given the same images both
loaders yield bit-identical batches.

Archives: streaming reads images in shuffled order. A folder or an uncompressed .tar can be read in
any order cheaply; a .tar.gz cannot (gzip has no random access: every backward seek decompresses
again from the start, so each batch may decompress most of the archive). It still works, correctly
and slowly; extract it, or recompress it as a plain .tar, to stream it at speed.

An image whose header reads but whose data is damaged further in is found only when a worker
decodes it: that stops the epoch with one ResnetlabError naming the file (check="decode" at open
time finds those too, at the cost of decoding everything once).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ResnetlabError
from .augment import Normalizer
from .decode import decode_image, fit_square, probe_image
from .folders import DEFAULT_IMAGE_SIZE, FolderIndex, folder_path, report_failures, scan_image_folder
from .known import KNOWN_DATASETS, canonical_name
from .loader import BatchLoader, View

log = logging.getLogger(__name__)

CHECKS = ("header", "decode")
_PROBE_CHUNK = 256  # images per thread-pool task when checking a folder's headers
_ESTIMATE_SAMPLE = 16  # images whose headers stand for the whole folder in estimate_folder_bytes


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------
# One split, read lazily


@dataclass
class StreamSet:
    """The images of one split of an image folder, decoded on demand (picklable, for workers).

    items: (key, label) of the images that passed the open-time check, in the order the in-memory
    loader keeps them; shape: the stored (C, H, W) every image is brought to; size: the square side
    images are fitted to (`fit_square`), or None when they all are H x W already.
    """

    index: FolderIndex
    items: list[tuple[str, int]]
    shape: tuple[int, int, int]
    size: int | None
    source: str
    labels: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        self.labels = torch.tensor([label for _, label in self.items], dtype=torch.int64)

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, index: torch.Tensor | slice) -> StreamSet:
        """The images at `index` (a slice, index tensor or boolean mask), as ImageSet.subset."""
        positions = torch.arange(len(self))[index].tolist()
        return StreamSet(self.index, [self.items[i] for i in positions], self.shape, self.size, self.source)

    def read(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The images at `positions` as one uint8 n x C x H x W tensor, exactly as the in-memory folder
        loader stores them. Archive members are read in storage order (one forward pass)."""
        if isinstance(positions, torch.Tensor):
            positions = positions.tolist()
        keys = [self.items[p][0] for p in positions]
        data = dict(self.index.iter_bytes(dict.fromkeys(keys)))
        out = torch.empty((len(keys), *self.shape), dtype=torch.uint8)
        for i, key in enumerate(keys):
            image = decode_image(data[key], key)
            if self.size:
                image = fit_square(image, self.size)
            out[i] = self._conform(image, key).expand(self.shape[0], -1, -1)
        return out

    def _conform(self, image: torch.Tensor, key: str) -> torch.Tensor:
        """Cover a header that promised other than the decoder gives (never seen with the formats
        `probe_image` mirrors): resize to the stored size, reduce colour to gray."""
        c, h, w = self.shape
        if image.shape[1:] == (h, w) and (image.shape[0] == 1 or c == 3):
            return image
        from torchvision.transforms.v2 import functional as F

        log.warning("%s: decoded as %s, not as its header promised (stored as %s); converting", key,
                    tuple(image.shape), self.shape)
        if image.shape[1:] != (h, w):
            image = F.resize(image, [h, w], antialias=True)
        return F.rgb_to_grayscale(image) if image.shape[0] == 3 and c == 1 else image

    def sample_images(self, n: int, seed: int = 0, num_workers: int = 0) -> torch.Tensor:
        """Up to `n` images (a fixed random sample, in stored order) as uint8 n x C x H x W, e.g. for
        `Normalizer.fit` without decoding the whole folder."""
        n = min(n, len(self))
        if n == 0:
            return torch.empty((0, *self.shape), dtype=torch.uint8)
        positions = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        chunks = [c.tolist() for c in positions.split(256)]
        return torch.cat(list(_read_batches(self, chunks, num_workers)))


@dataclass
class StreamSplits:
    """What `open_stream` returns; the streaming counterpart of DataSplits."""

    name: str
    train: StreamSet
    test: StreamSet
    classes: list[str]
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape


# --------------------------------------------------------------------------------------------------
# Opening a folder: the check that fixes which images there are, their channels and size


def _probe_keys(index: FolderIndex, keys: list[str], check: str) -> dict[str, tuple[int, int, int] | None]:
    """(C, H, W) per key as `decode_image` gives it (None: unreadable), from its header or a decode."""
    from tqdm import tqdm

    def one(key: str, data: bytes | None) -> tuple[int, int, int] | None:
        # As in memory, a file that cannot be read stops the load; one that cannot be decoded is skipped.
        if check == "decode":
            try:
                return tuple(decode_image(data, key).shape)
            except ResnetlabError:
                return None
        try:
            f = io.BytesIO(data) if data is not None else open(key, "rb")  # a file: read just the header
        except OSError as e:
            raise ResnetlabError(f"cannot read {key}: {e.strerror or e}") from None
        with f:
            try:
                return probe_image(f, key)
            except ResnetlabError:
                return None

    bar = tqdm(total=len(keys), desc=f"checking images ({check})", unit="img", disable=None)
    found: dict[str, tuple[int, int, int] | None] = {}
    with bar:
        if index.archive is not None or check == "decode":  # archives: one forward pass
            for key, data in index.iter_bytes(keys):
                found[key] = one(key, data)
                bar.update()
        else:  # headers of files: more waiting on the disk than work for Python, so use threads
            def chunk_of(chunk: list[str]) -> list[tuple[int, int, int] | None]:
                return [one(k, None) for k in chunk]

            chunks = [keys[i:i + _PROBE_CHUNK] for i in range(0, len(keys), _PROBE_CHUNK)]
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
                for chunk, shapes in zip(chunks, pool.map(chunk_of, chunks), strict=True):
                    found.update(zip(chunk, shapes, strict=True))
                    bar.update(len(chunk))
    return found


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def open_stream(spec, image_size: int | None = None, split_fraction: float = 0.1, seed: int = 0,
                check: str = "header") -> StreamSplits:
    """Index a class-folder data set (folder or archive) for streaming, as `load_dataset` would load it.

    `image_size`, `split_fraction` and `seed` mean what they mean to load_dataset, and the splits hold
    the same images in the same order, stored at the same size. check="header" reads each image's
    header (fast); check="decode" decodes each image once (slow, and then exactly the in-memory rule).
    """
    if check not in CHECKS:
        raise ResnetlabError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    if not isinstance(spec, Path) and canonical_name(str(spec)) is not None:
        raise ResnetlabError(f"{spec} is a known data set ({', '.join(KNOWN_DATASETS)}); those fit in "
                             f"memory: load them with load_dataset, stream only image folders")
    path = folder_path(spec)
    index = scan_image_folder(path, split_fraction, seed)
    if index.archive is not None and _is_gzip(index.archive):
        log.warning("%s is gzip-compressed: streaming it decompresses much of it again for every batch; "
                    "extract it (or repack it as an uncompressed .tar) to stream at speed", path)
    keys = [k for k, _ in index.train] + [k for k, _ in index.test]
    shapes = _probe_keys(index, keys, check)
    report_failures([k for k in keys if shapes[k] is None], len(keys), str(path))
    good = [s for s in shapes.values() if s is not None]
    if not good:
        raise ResnetlabError(f"{path}: no image could be decoded")
    channels = 3 if any(c == 3 for c, _, _ in good) else 1  # gray only if all are gray
    size = image_size
    if size is None and len({(h, w) for _, h, w in good}) > 1:
        size = DEFAULT_IMAGE_SIZE  # sizes differ: everything becomes DEFAULT_IMAGE_SIZE squares
    shape = (channels, size, size) if size else (channels, *good[0][1:])

    def split(items) -> StreamSet:
        return StreamSet(index, [(k, label) for k, label in items if shapes[k] is not None], shape, size,
                         str(path))

    return StreamSplits(str(spec), split(index.train), split(index.test), list(index.classes), str(path))


# --------------------------------------------------------------------------------------------------
# In memory or streamed?


def total_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimate_folder_bytes(index: FolderIndex, image_size: int | None) -> int:
    """About how many bytes the folder's images take decoded in memory (uint8, train + test), judged
    from the headers of a few images spread over it (the first few of a .tar.gz)."""
    items = index.train + index.test
    if not items:
        return 0
    if index.archive is not None and _is_gzip(index.archive):
        picks = sorted(items, key=lambda it: index.members[it[0]][0])[:_ESTIMATE_SAMPLE]
    else:
        step = max(1, len(items) // _ESTIMATE_SAMPLE)
        picks = items[::step][:_ESTIMATE_SAMPLE]
    shapes = [s for s in _probe_keys_quiet(index, [k for k, _ in picks]) if s is not None]
    channels = 3 if not shapes or any(c == 3 for c, _, _ in shapes) else 1
    if image_size:
        pixels = image_size * image_size
    elif shapes and len({(h, w) for _, h, w in shapes}) == 1:
        pixels = shapes[0][1] * shapes[0][2]
    else:
        pixels = DEFAULT_IMAGE_SIZE * DEFAULT_IMAGE_SIZE
    return len(items) * channels * pixels


def _probe_keys_quiet(index: FolderIndex, keys: list[str]) -> list[tuple[int, int, int] | None]:
    out = []
    for key, data in index.iter_bytes(keys):
        try:
            out.append(probe_image(data, key))
        except ResnetlabError:
            out.append(None)
    return out


def fits_in_memory(index: FolderIndex, image_size: int | None, budget_fraction: float = 0.25,
                   memory_bytes: int | None = None) -> bool:
    """Whether the folder, decoded, takes at most `budget_fraction` of the memory (`memory_bytes`,
    default: this machine's RAM). The fraction leaves room for decoding, which briefly holds the
    images twice, for the model and for other processes."""
    memory = total_memory() if memory_bytes is None else memory_bytes
    return estimate_folder_bytes(index, image_size) <= budget_fraction * memory


# --------------------------------------------------------------------------------------------------
# Reading batches in worker processes


class _Reader(torch.utils.data.Dataset):
    """One item per batch: the batch's positions in, its uint8 images out (or the error's message,
    which the main process raises as one clean ResnetlabError)."""

    def __init__(self, source: StreamSet):
        self.source = source

    def __getitem__(self, positions: list[int]) -> torch.Tensor | str:
        try:
            return self.source.read(positions)
        except ResnetlabError as e:
            return str(e)


class _Plan:
    """The sampler: the batches of the epoch being read, set before each pass."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _data_loader(source: StreamSet, num_workers: int, pin_memory: bool, persistent: bool):
    plan = _Plan()
    loader = torch.utils.data.DataLoader(_Reader(source), batch_size=None, sampler=plan,
                                         num_workers=num_workers, pin_memory=pin_memory,
                                         persistent_workers=persistent)
    return loader, plan


def _unwrap(out: torch.Tensor | str) -> torch.Tensor:
    if isinstance(out, str):
        raise ResnetlabError(f"{out}; it passed the header check when the folder was opened, but its "
                             f"data is damaged: fix or remove the file")
    return out


def _read_batches(source: StreamSet, batches: list[list[int]], num_workers: int) -> Iterator[torch.Tensor]:
    """The uint8 images of each batch of positions, in order, decoded by `num_workers` processes."""
    if num_workers == 0:
        for positions in batches:
            yield _unwrap(_Reader(source)[positions])
        return
    loader, plan = _data_loader(source, min(num_workers, len(batches)) or 1, False, False)
    plan.batches = batches
    for out in loader:
        yield _unwrap(out)


class StreamingLoader(BatchLoader):
    """A BatchLoader whose images stream from an image folder (`open_stream`'s train or test).

    Same order, batches, rank slices, per-batch augmentation and resume as BatchLoader over the same
    images decoded in memory. `num_workers` processes (default min(4, CPUs); 0: decode in this
    process) decode upcoming batches while the current one trains; they persist between epochs.
    One epoch at a time: starting another `epoch()` ends the one in progress. `close()` stops the
    workers (they also stop when the loader is garbage-collected).
    """

    def __init__(self, source: StreamSet, batch_size: int, *, train: bool, view: View,
                 normalizer: Normalizer, device: torch.device | str = "cpu", channels_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__(source, source.labels, batch_size, train=train, view=view, normalizer=normalizer,
                         device=device, channels_last=channels_last, seed=seed, rank=rank,
                         world_size=world_size, dtype=dtype)
        self.source = source  # also `images`: BatchLoader's name for where the images come from
        self.num_workers = default_workers() if num_workers is None else num_workers
        if self.num_workers < 0:
            raise ResnetlabError(f"num_workers must be 0 or more, got {self.num_workers}")
        self._loader = None
        self._plan: _Plan | None = None
        self._pass = 0  # which epoch() call owns the workers

    def close(self) -> None:
        """Stop the worker processes (a later epoch starts new ones)."""
        self._loader = self._plan = None

    def _decoded(self, batches: list[list[int]]) -> Iterator[torch.Tensor]:
        if not batches:
            return
        if self.num_workers == 0:
            yield from _read_batches(self.source, batches, 0)
            return
        if self._loader is None:
            self._loader, self._plan = _data_loader(self.source, self.num_workers,
                                                    pin_memory=self.device.type == "cuda", persistent=True)
        self._pass += 1
        mine = self._pass
        self._plan.batches = batches
        outputs = iter(self._loader)  # the persistent workers, reset to this plan
        for _ in batches:
            if self._pass != mine:  # checked before taking a batch, so none is taken from the new pass
                raise RuntimeError("another epoch() of this StreamingLoader started: it reads one epoch "
                                   "at a time")
            yield _unwrap(next(outputs))

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, labels) on the device for batches start, start+1, ... of `epoch`."""
        plan = list(self.batches(epoch, start))
        decoded = self._decoded([idx.tolist() for _, idx in plan])
        for (b, idx), x in zip(plan, decoded, strict=True):
            yield self.inputs(x, self.labels[idx], epoch, b, idx)

"""Image-folder data sets: a folder (or a .tar/.tar.gz of one) with one sub-folder per class,
optionally split into train/ and val/ (or test/).

* `scan_image_folder`: an index of the images (a picklable `FolderIndex`), without decoding them,
  for a folder or a tar archive (read in place);
* `decode_index`: every image of an index decoded (decode.py) into uint8 tensors, unreadable ones
  skipped with a counted warning;
* `load_folder`: the data set in memory, from the decoded-folder cache (cache.py) or decoded.

`stream` reads the same index lazily for folders too large for memory.
"""

from __future__ import annotations

import gzip
import logging
import os
import tarfile
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch

from ..errors import ResnetlabError
from .archive import is_archive, normalize_member, tar_error
from .cache import cache_key, load_cache, save_cache
from .decode import decode_image, fit_square
from .known import KNOWN_DATASETS, first_writable, user_roots
from .splits import DataSplits, ImageSet

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 256  # side of the square images when a folder's images differ in size
MAX_BAD_FRACTION = 0.01  # more unreadable images than this means the folder is broken, not noisy
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEST_DIR_NAMES = ("val", "valid", "validation", "test")  # first one present is the held-out set
_CACHE_VERSION = 1  # bump when the cached tensors would come out differently

Pair = tuple[torch.Tensor, torch.Tensor]  # uint8 images N x C x H x W, int64 labels N


# --------------------------------------------------------------------------------------------------
# Image folders


@dataclass
class FolderIndex:
    """The images of a class-folder data set, for reading lazily (e.g. in loader worker processes).

    Items are (key, label): a key is a file path, or a tar member name when `archive` is set. The
    index is picklable; an open archive handle is kept per process and never pickled. Reading a
    .tar.gz out of order re-decompresses from the start: extract it (or use a plain .tar) for
    random access.
    """

    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    archive: str | None = None
    members: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)  # key -> (offset, size)
    _handle: tuple[int, object] | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def _archive_file(self):
        # A handle inherited through fork shares its file position with the parent: reopen per process.
        if self._handle is None or self._handle[0] != os.getpid():
            with open(self.archive, "rb") as probe:
                gzipped = probe.read(2) == b"\x1f\x8b"
            self._handle = (os.getpid(), gzip.open(self.archive) if gzipped else open(self.archive, "rb"))
        return self._handle[1]

    def read_bytes(self, key: str) -> bytes:
        """The encoded bytes of one item."""
        if self.archive is None:
            try:
                return Path(key).read_bytes()
            except OSError as e:
                raise ResnetlabError(f"cannot read {key}: {e.strerror or e}") from None
        offset, size = self.members[key]
        try:
            f = self._archive_file()
            f.seek(offset)
            data = f.read(size)
        except (OSError, EOFError, zlib.error) as e:
            raise tar_error(Path(self.archive), e) from None
        if len(data) != size:
            raise ResnetlabError(f"{self.archive}: member {key} is cut short; the archive changed or is "
                                 f"truncated")
        return data

    def iter_bytes(self, keys: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(key, bytes) for every key, in storage order (one forward pass through an archive)."""
        keys = list(keys)
        if self.archive is not None:
            keys.sort(key=lambda k: self.members[k][0])
        for key in keys:
            yield key, self.read_bytes(key)


def _walk_directory(root: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """(relative posix path, key) of every visible file, and every visible relative folder."""
    files, folders = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            folders.add((rel / d).as_posix())
        for f in filenames:
            if not _hidden(f):
                files.append(((rel / f).as_posix(), str(Path(dirpath) / f)))
    return files, folders


def _walk_archive(path: Path) -> tuple[list[tuple[str, str]], set[str], dict[str, tuple[int, int]]]:
    files, folders, members = [], set(), {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = normalize_member(member.name)
                if not name or any(_hidden(p) for p in name.split("/")):
                    continue
                parent = name.rsplit("/", 1)[0] if "/" in name else ""
                if member.isdir():
                    folders.add(name)
                elif member.isfile():
                    files.append((name, member.name))
                    members[member.name] = (member.offset_data, member.size)
                if parent:  # archives need not list a file's folders as members of their own
                    parts = parent.split("/")
                    folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise tar_error(path, e) from None
    return files, folders, members


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _strip_wrapper(files: list[tuple[str, str]], folders: set[str]):
    """Drop one enclosing folder (e.g. `flowers/train/...` in an archive) while everything is inside it."""
    while files:
        tops = {rel.split("/")[0] for rel, _ in files}
        top = next(iter(tops))
        deep = all(rel.count("/") >= 2 for rel, _ in files)
        if len(tops) != 1 or not deep or top.lower() == "train":
            break
        files = [(rel[len(top) + 1:], key) for rel, key in files]
        folders = {f[len(top) + 1:] for f in folders if f.startswith(top + "/")}
    return files, folders


def _class_items(files, folders, base: str, where: str) -> dict[str, list[str]]:
    """{class: sorted keys} for images in <base>/<class>/... (base "" is the top)."""
    prefix = f"{base}/" if base else ""
    items: dict[str, list[str]] = {}
    for f in folders:
        if f.startswith(prefix) and "/" not in f[len(prefix):] and f[len(prefix):]:
            items.setdefault(f[len(prefix):], [])
    for rel, key in files:
        if not rel.startswith(prefix) or PurePosixPath(rel).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        parts = rel[len(prefix):].split("/")
        if len(parts) >= 2:  # files directly in the top folder belong to no class
            items.setdefault(parts[0], []).append(key)
    for name, keys in items.items():
        if not keys:
            raise ResnetlabError(
                f"{where}: class folder '{prefix}{name}' has no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder")
        keys.sort()
    return items


def _layout_error(where: str) -> ResnetlabError:
    return ResnetlabError(
        f"{where}: no class sub-folders with images; the folder must hold one sub-folder per class "
        f"(<folder>/<class>/<image>.jpg), optionally under train/ and val/ (or test/)")


def _split_by_fraction(items: dict[str, list[str]], classes: list[str], fraction: float, seed: int):
    """Hold out `fraction` of each class (at least one image when it has two), reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label, name in enumerate(classes):
        keys = items[name]
        n = len(keys)
        n_test = round(n * fraction)
        if fraction > 0 and n >= 2:
            n_test = min(max(n_test, 1), n - 1)
        held = set(torch.randperm(n, generator=generator)[:n_test].tolist())
        train += [(k, label) for i, k in enumerate(keys) if i not in held]
        test += [(k, label) for i, k in enumerate(keys) if i in held]
    return train, test


def scan_image_folder(path: str | Path, split_fraction: float = 0.1, seed: int = 0) -> FolderIndex:
    """Index a class-folder data set (a folder, or a .tar/.tar.gz/.tgz of one) without decoding it.

    Uses train/ and val/ (else test/, valid/, validation/) when present; otherwise holds out
    `split_fraction` of each class, chosen with `seed`. Classes are sorted by name.
    """
    path = Path(path).expanduser().resolve()  # absolute keys work from any worker's directory
    if not 0 <= split_fraction < 1:
        raise ResnetlabError(f"split fraction {split_fraction} must be in [0, 1)")
    if path.is_dir():
        files, folders = _walk_directory(path)
        archive, members = None, {}
    elif is_archive(path):
        files, folders, members = _walk_archive(path)
        archive = str(path)
    else:
        raise ResnetlabError(f"{path}: not a folder or a .tar/.tar.gz/.tgz archive of one; give a folder "
                             f"of class sub-folders (<folder>/<class>/<image>.jpg)")
    files, folders = _strip_wrapper(files, folders)
    tops = {f for f in folders if "/" not in f}
    test_dir = next((d for d in TEST_DIR_NAMES if d in tops), None)
    if "train" in tops and test_dir:
        train_items = _class_items(files, folders, "train", str(path))
        test_items = _class_items(files, folders, test_dir, str(path))
        if not train_items:
            raise _layout_error(f"{path}/train")
        stray = sorted(set(test_items) - set(train_items))
        if stray:
            raise ResnetlabError(f"{path}: class '{stray[0]}' is in {test_dir}/ but not in train/; "
                                 f"every class needs training images")
        classes = sorted(train_items)
        train = [(k, i) for i, c in enumerate(classes) for k in train_items[c]]
        test = [(k, i) for i, c in enumerate(classes) for k in test_items.get(c, [])]
    else:
        base = "train" if "train" in tops else ""
        items = _class_items(files, folders, base, str(path))
        if not items:
            raise _layout_error(str(path))
        classes = sorted(items)
        train, test = _split_by_fraction(items, classes, split_fraction, seed)
    return FolderIndex(classes, train, test, archive, members)


def decode_index(index: FolderIndex, image_size: int | None, where: str) -> tuple[Pair, Pair]:
    """Decode every image of the index: (images, labels) of its train and its test items.

    Unreadable images are skipped and counted (`report_failures`). `image_size` fits every image to
    that square (`fit_square`); without it the images keep their size when they all share one, else
    become DEFAULT_IMAGE_SIZE squares. Channels: 1 if every image is grayscale, else 3.
    """
    from tqdm import tqdm

    keys = [k for k, _ in index.train] + [k for k, _ in index.test]
    decoded: dict[str, torch.Tensor] = {}
    failed: list[str] = []
    target, first_shape = image_size, None
    stream = index.iter_bytes(keys)
    for key, data in tqdm(stream, total=len(keys), desc="decoding images", unit="img", disable=None):
        try:
            image = decode_image(data, key)
        except ResnetlabError:
            failed.append(key)
            continue
        if target is None:  # sizes differ? then everything becomes DEFAULT_IMAGE_SIZE squares
            first_shape = first_shape or image.shape[1:]
            if image.shape[1:] != first_shape:
                target = DEFAULT_IMAGE_SIZE
                decoded = {k: fit_square(v, target) for k, v in decoded.items()}
        decoded[key] = fit_square(image, target) if target else image
    report_failures(failed, len(keys), where)
    if not decoded:
        raise ResnetlabError(f"{where}: no image could be decoded")
    channels = 3 if any(v.shape[0] == 3 for v in decoded.values()) else 1  # gray only if all are gray
    shape = (channels, *next(iter(decoded.values())).shape[1:])

    def stack(items) -> Pair:
        kept = [(decoded[k], label) for k, label in items if k in decoded]
        if not kept:
            return torch.empty((0, *shape), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
        images = torch.stack([img.expand(channels, -1, -1) for img, _ in kept])
        return images, torch.tensor([label for _, label in kept], dtype=torch.int64)

    return stack(index.train), stack(index.test)


def report_failures(failed: list[str], total: int, where: str) -> None:
    """Warn about a few unreadable images (`failed` of `total`); fail past MAX_BAD_FRACTION."""
    if not failed:
        return
    examples = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
    if len(failed) > MAX_BAD_FRACTION * total:
        raise ResnetlabError(f"{where}: {len(failed)} of {total} images cannot be decoded ({examples}); "
                             f"more than {MAX_BAD_FRACTION:.0%} means the folder is damaged: fix or "
                             f"remove those files")
    warnings.warn(f"{where}: skipped {len(failed)} of {total} images that cannot be decoded "
                  f"({examples})", stacklevel=2)


# --------------------------------------------------------------------------------------------------
# In memory: the cache, or the images themselves


def folder_path(spec: str | Path) -> Path:
    """The resolved path of a class-folder data set given as `spec`: a folder or an archive of one."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise ResnetlabError(f"{spec}: no such folder or archive; give a known data set "
                             f"({', '.join(KNOWN_DATASETS)}) or a folder of class sub-folders")
    path = path.resolve()
    if not path.is_dir() and not is_archive(path):
        raise ResnetlabError(f"{path}: not a folder or a .tar/.tar.gz/.tgz archive of one; give a known "
                             f"data set ({', '.join(KNOWN_DATASETS)}) or a folder of class sub-folders")
    return path


def load_folder(spec, data_dir=None, image_size: int | None = None, split_fraction: float = 0.1,
                seed: int = 0, index: FolderIndex | None = None,
                cache_only: bool = False) -> DataSplits | None:
    """A class-folder data set in memory: from the decoded-folder cache, else decoded (and cached).
    `index`: the folder's scan, when the caller has it. `cache_only`: None when it is not cached."""
    path = folder_path(spec)
    archive = is_archive(path)
    # An archive's key needs only a stat, so a cached archive is never even listed.
    if index is None and not archive:
        index = scan_image_folder(path, split_fraction, seed)
    files = None if archive else [k for k, _ in index.train + index.test]
    key = cache_key(path, files, image_size, split_fraction, seed)
    roots = user_roots(data_dir)
    cached = load_cache(key, roots)
    if cached is not None:
        log.info("loaded %s from the decoded-image cache", path)
        train, test, classes = cached
    elif cache_only:
        return None
    else:
        index = index or scan_image_folder(path, split_fraction, seed)
        train, test = decode_index(index, image_size, str(path))
        classes = list(index.classes)
        save_cache(key, first_writable(roots), train, test, classes, str(path))
    return DataSplits(str(spec), ImageSet(*train, list(classes)), ImageSet(*test, list(classes)),
                      list(classes), str(path))



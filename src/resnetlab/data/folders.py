"""Image-folder data sets: a folder (or a .tar/.tar.gz of one) with one sub-folder per class,
optionally split into train/ and val/ (or test/).

* decoding single images (`decode_image`) and fitting them to a square (`fit_square`);
* `scan_image_folder`: an index of the images (a picklable `FolderIndex`), without decoding them;
* `decode_index`: every image of an index decoded into uint8 tensors, unreadable ones skipped;
* the decoded-folder cache (safetensors), so a folder is decoded once.

Readers here return plain tensors; `sources` wraps them into ImageSets, and `stream` reads the same
index lazily for folders too large for memory.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import ResnetlabError
from .idx import check_label_range

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 256  # side of the square images when a folder's images differ in size
MAX_BAD_FRACTION = 0.01  # more unreadable images than this means the folder is broken, not noisy
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEST_DIR_NAMES = ("val", "valid", "validation", "test")  # first one present is the held-out set
_CACHE_VERSION = 1  # bump when the cached tensors would come out differently

Pair = tuple[torch.Tensor, torch.Tensor]  # uint8 images N x C x H x W, int64 labels N


# --------------------------------------------------------------------------------------------------
# Decoding single images


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@functools.cache
def _torchvision_io():
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # torchvision 0.29 deprecates these; PIL takes over once they are gone
        return None
    return decode_image, ImageReadMode


def _decode_torchvision(data: bytes, fmt: str) -> torch.Tensor | None:
    """Decode with torchvision's libjpeg/libpng/... bindings; None where torchvision has none."""
    if _torchvision_io() is None:
        return None
    tv_decode, ImageReadMode = _torchvision_io()

    def run(mode):
        with warnings.catch_warnings():  # the deprecation notice would fire once per image
            warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision",
                                    DeprecationWarning)
            return tv_decode(buffer, mode=mode)

    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    mode = ImageReadMode.UNCHANGED
    if fmt == "png" and len(data) > 25 and data[25] == 3:
        mode = ImageReadMode.RGB  # palette PNG: UNCHANGED would return the palette indices
    image = run(mode)
    if image.ndim == 4:  # animated GIF: keep the first frame
        image = image[0]
    if fmt == "jpeg" and image.shape[0] == 4:  # CMYK JPEG: let libjpeg convert, not "drop alpha"
        image = run(ImageReadMode.RGB)
    if image.dtype == torch.uint16:  # 16-bit PNG
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image


_PIL_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}


def _decode_pil(data: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode.startswith("I;16"):  # 16-bit grayscale: keep the high byte, as for 16-bit PNG
            array = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
        elif im.mode in _PIL_GRAY_MODES:
            array = np.asarray(im.convert("L"))
        else:  # RGB, RGBA, palette, CMYK, YCbCr, ...
            array = np.asarray(im.convert("RGB"))
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def decode_image(data: bytes, name: str = "") -> torch.Tensor:
    """Encoded image bytes as uint8 C x H x W: C=1 for grayscale sources, else 3 (alpha dropped,
    palettes expanded). torchvision decodes JPEG/PNG/GIF/WEBP; PIL the rest and what torchvision rejects."""
    fmt = _sniff(data)
    image = None
    if fmt is not None:
        try:
            image = _decode_torchvision(data, fmt)
        except (RuntimeError, ValueError):
            image = None  # e.g. an unusual PNG/JPEG variant: PIL may still read it
    if image is None:
        try:
            image = _decode_pil(data)
        except Exception as e:  # PIL raises many different types for a broken file
            raise ResnetlabError(f"{name or 'image'}: cannot decode ({type(e).__name__}: {e})") from None
    if image.shape[0] == 2:  # gray + alpha
        image = image[:1]
    elif image.shape[0] == 4:  # RGBA
        image = image[:3]
    return image.contiguous()


def probe_image(source: bytes | io.BufferedIOBase, name: str = "") -> tuple[int, int, int]:
    """(C, H, W) that `decode_image` gives for these bytes (or this binary file), from the header
    alone: cheap, and catches files that are not images at all (not damage further into a file).

    Mirrors decode_image's rules: torchvision decodes GIF and WEBP as RGB; otherwise grayscale modes
    (1, L, LA, I, F, 16-bit) give one channel, everything else three.
    """
    from PIL import Image

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        head = stream.read(16)
        stream.seek(0)
        fmt = _sniff(head)
        with Image.open(stream) as im:
            mode, (width, height) = im.mode, im.size
    except Exception as e:  # PIL raises many different types for a broken file
        raise ResnetlabError(f"{name or 'image'}: cannot decode ({type(e).__name__}: {e})") from None
    if fmt in ("gif", "webp") and _torchvision_io() is not None:
        channels = 3
    else:
        channels = 1 if mode.startswith("I;16") or mode in _PIL_GRAY_MODES else 3
    return channels, height, width


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and centre-crop a square (single image or batch)."""
    if image.shape[-2:] == (size, size):
        return image
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image, [size], antialias=True)
    return F.center_crop(image, [size, size]).contiguous()


# --------------------------------------------------------------------------------------------------
# Tar archives


def normalize_member(name: str) -> str:
    """A tar member name without "./", empty parts ("test//x") or trailing slashes."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz"))


def tar_error(path: Path, e: Exception) -> ResnetlabError:
    return ResnetlabError(f"{path}: damaged or unreadable archive ({type(e).__name__}: {e}); delete it "
                          f"and download it again")


def read_tar_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the members named in `wanted` (normalized names), in one sequential pass."""
    found = {}
    try:
        with tarfile.open(path, "r|*") as tar:  # streaming: a .tar.gz is decompressed once
            for member in tar:
                name = normalize_member(member.name)
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise tar_error(path, e) from None
    return found


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
# The decoded-folder cache


def cache_key(path: Path, index: FolderIndex | None, image_size, split_fraction, seed) -> str:
    """A hash of everything the decoded tensors depend on."""
    if index is None:  # an archive: its size and mtime stand for its contents
        st = path.stat()
        contents: object = [st.st_size, st.st_mtime_ns]
    else:
        contents = []
        for key, _ in index.train + index.test:
            st = os.stat(key)
            contents.append([key, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": _CACHE_VERSION, "path": str(path), "contents": contents,
                       "image_size": image_size, "split": [split_fraction, seed]})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _cache_files(key: str, root: Path) -> tuple[Path, Path]:
    folder = root / "folders"
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def _check_cached(images: torch.Tensor, labels: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images are {images.dtype} {tuple(images.shape)}, not uint8 N x C x H x W")
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise ValueError(f"labels are {labels.dtype} {tuple(labels.shape)} for {len(images)} images")


def load_cache(key: str, roots: Iterable[Path]) -> tuple[Pair, Pair, list[str]] | None:
    """(train, test, classes) cached under `key` in the first of `roots` that has it, else None
    (also when the cache is damaged: it is then logged and ignored)."""
    root = next((r for r in roots if _cache_files(key, r)[0].is_file()), None)
    if root is None:
        return None
    files = _cache_files(key, root)
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        classes = json.loads(files[1].read_text())["classes"]
        # Read the bytes rather than mmap the file: the tensors then own their memory and cannot be
        # disturbed by another process rewriting the cache.
        tensors = load(files[0].read_bytes())
        splits = tuple((tensors[f"{s}_images"], tensors[f"{s}_labels"]) for s in ("train", "test"))
        for images, labels in splits:
            _check_cached(images, labels)
            check_label_range(labels, len(classes), files[0])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, ResnetlabError) as e:
        log.warning("ignoring damaged cache %s (%s); decoding the images again", files[0], e)
        return None
    return splits[0], splits[1], list(classes)


def save_cache(key: str, root: Path | None, train: Pair, test: Pair, classes: Sequence[str],
               source: str) -> None:
    """Cache decoded splits under `key` in `root` (a writable folder; None: do not cache)."""
    if root is None:
        return
    files = _cache_files(key, root)
    from safetensors.torch import save_file

    tensors = {"train_images": train[0], "train_labels": train[1],
               "test_images": test[0], "test_labels": test[1]}
    meta = {"classes": list(classes), "source": source, "version": _CACHE_VERSION}
    try:
        files[0].parent.mkdir(parents=True, exist_ok=True)
        # Write under temporary names, then rename: a crash never leaves a half-written cache behind.
        for dest, write in ((files[1], lambda p: p.write_text(json.dumps(meta))),
                            (files[0], lambda p: save_file(tensors, str(p)))):
            tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
            write(tmp)
            os.replace(tmp, dest)
    except OSError as e:  # caching is an optimisation: never fail a load for it
        log.info("not caching decoded images in %s: %s", files[0].parent, e)

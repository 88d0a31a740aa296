"""Where image data sets come from, and `load_dataset`, which reads any of them into memory as uint8
tensors.

Two kinds of source:

* the known data sets (MNIST, Fashion-MNIST as IDX files; CIFAR-10/100 as the official python pickles),
  found on disk in the usual layouts (torchvision's, Debian's, the official archives) or downloaded
  from their official addresses with an md5 check;
* a folder (or a .tar/.tar.gz of one) with one sub-folder per class, optionally split into train/ and
  val/ (or test/), decoded once and cached as safetensors.

This module holds the containers (ImageSet, DataSplits), the known data sets, the search roots,
locating and downloading, and the dispatch; the formats are read by `idx` (MNIST), `cifar` (CIFAR
pickles) and `folders` (image decoding, class folders, the decoded-folder cache), whose public
names are importable from here too. Everything a user can get wrong (missing files, damaged files,
a bad folder layout) ends in one ResnetlabError line that names the file and the fix.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ResnetlabError
from ..paths import cache_root
from .cifar import load_cifar, read_cifar_batch
from .folders import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_EXTENSIONS,
    MAX_BAD_FRACTION,
    TEST_DIR_NAMES,
    FolderIndex,
    cache_key,
    decode_image,
    decode_index,
    fit_square,
    is_archive,
    load_cache,
    save_cache,
    scan_image_folder,
)
from .idx import idx_file, load_idx_split, read_idx

__all__ = [
    "DEFAULT_IMAGE_SIZE", "IMAGE_EXTENSIONS", "KNOWN_DATASETS", "MAX_BAD_FRACTION", "SYSTEM_ROOTS",
    "TEST_DIR_NAMES", "DataSplits", "FolderIndex", "ImageSet", "decode_image", "fetch", "list_sources",
    "load_dataset", "locate", "read_cifar_batch", "read_idx", "scan_image_folder",
]

log = logging.getLogger(__name__)

KNOWN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")

# Searched after data_dir, $RESNETLAB_DATA and the user cache. Debian's dataset-fashion-mnist package
# installs /usr/share/datasets/fashion-mnist/*.gz, i.e. the `<root>/<name>/` layout under this root.
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

DOWNLOAD_TIMEOUT = 15  # seconds without an answer before a download counts as offline


# --------------------------------------------------------------------------------------------------
# Containers


@dataclass
class ImageSet:
    """Images and labels of one split: `images` uint8 N x C x H x W (contiguous), `labels` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self):
        # Programming errors, not user errors: every reader builds these tensors itself.
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored images (StreamSet has the same property)."""
        return tuple(self.images.shape[1:])

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        """The images at `index` (a slice, index tensor or boolean mask), same classes."""
        return ImageSet(self.images[index].contiguous(), self.labels[index].contiguous(),
                        list(self.classes))


@dataclass
class DataSplits:
    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    source: str


# --------------------------------------------------------------------------------------------------
# The known data sets: where their files live and where they come from


@dataclass(frozen=True)
class _Known:
    name: str
    kind: str                              # "idx" or "cifar"
    layout_dirs: tuple[str, ...]           # torchvision's folder, relative to a root
    url: str                               # base address of the official files
    downloads: tuple[tuple[str, str], ...]  # (file name, md5) as torchvision checks them
    train: tuple[str, ...]                 # IDX: (images, labels); CIFAR: batch files
    test: tuple[str, ...]
    classes: tuple[str, ...] = ()          # IDX class names; CIFAR reads them from its meta file
    archive: str | None = None             # CIFAR: the official .tar.gz, readable in place
    meta: tuple[str, str] | None = None    # CIFAR: (meta file, key of the class names)

    @property
    def needed(self) -> tuple[str, ...]:
        return self.train + self.test + ((self.meta[0],) if self.meta else ())


_IDX_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# md5 values are torchvision's (datasets/mnist.py and datasets/cifar.py).
_KNOWN = {
    "mnist": _Known(
        "mnist", "idx", ("MNIST/raw",), "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
         ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
         ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
         ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
        _IDX_TRAIN, _IDX_TEST, classes=tuple(str(d) for d in range(10))),
    "fashion-mnist": _Known(
        "fashion-mnist", "idx", ("FashionMNIST/raw",),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
         ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
         ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
        _IDX_TRAIN, _IDX_TEST,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot")),
    "cifar10": _Known(
        "cifar10", "cifar", ("cifar-10-batches-py",), "https://www.cs.toronto.edu/~kriz/",
        (("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        archive="cifar-10-python.tar.gz", meta=("batches.meta", "label_names")),
    "cifar100": _Known(
        "cifar100", "cifar", ("cifar-100-python",), "https://www.cs.toronto.edu/~kriz/",
        (("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        ("train",), ("test",), archive="cifar-100-python.tar.gz", meta=("meta", "fine_label_names")),
}


def _canonical_name(spec: str) -> str | None:
    """The known data set `spec` names ("FashionMNIST", "cifar_10", ...), or None for a path."""
    if "/" in spec or os.sep in spec:
        return None
    squashed = spec.lower().replace("-", "").replace("_", "")
    return {name.replace("-", ""): name for name in KNOWN_DATASETS}.get(squashed)


def _known(name: str) -> _Known:
    canonical = _canonical_name(str(name))
    if canonical is None:
        raise ResnetlabError(f"unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    return _KNOWN[canonical]


# --------------------------------------------------------------------------------------------------
# Finding files


def _user_roots(data_dir: str | Path | None) -> list[Path]:
    """Roots the user controls, in search order: data_dir, $RESNETLAB_DATA, the user cache."""
    roots = [Path(data_dir).expanduser()] if data_dir else []
    if os.environ.get("RESNETLAB_DATA"):
        roots.append(Path(os.environ["RESNETLAB_DATA"]).expanduser())
    roots.append(cache_root())
    return list(dict.fromkeys(roots))  # drop repeats, keep order


def _search_roots(data_dir: str | Path | None) -> list[Path]:
    return list(dict.fromkeys(_user_roots(data_dir) + list(SYSTEM_ROOTS)))


def _first_writable(roots: Iterable[Path]) -> Path | None:
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK | os.X_OK):
            return root
    return None


def _candidates(known: _Known, root: Path) -> list[Path]:
    """Places inside one root that may hold the data set, most specific first."""
    places = []
    for base in (root / known.name, root):
        places += [base / d for d in known.layout_dirs]
        if known.archive:
            places.append(base / known.archive)
        places.append(base)
    return places


def _is_complete(known: _Known, place: Path) -> bool:
    if place.is_file():  # an official archive: its contents are checked when it is read
        return place.name == known.archive
    if not place.is_dir():
        return False
    if known.kind == "idx":
        return all(idx_file(place, stem) for stem in known.needed)
    return all((place / f).is_file() for f in known.needed)


def locate(name: str, data_dir: str | Path | None = None) -> Path | None:
    """Where the known data set `name` is on disk (its folder, or CIFAR's archive), or None.

    Looks in data_dir, $RESNETLAB_DATA, $XDG_CACHE_HOME/resnetlab (~/.cache/resnetlab), then
    /usr/share/datasets; within each root in <root>/<name>/, torchvision's layout, the official
    archive and the root itself. Files found here are not md5-checked (Debian recompresses its .gz
    files); they are checked for structure when read.
    """
    known = _known(name)
    for root in _search_roots(data_dir):
        for place in _candidates(known, root):
            if _is_complete(known, place):
                return place
    return None


def list_sources(data_dir: str | Path | None = None) -> list[dict]:
    """One row per known data set: name, found, path (or None), searched (the roots, in order)."""
    searched = [str(r) for r in _search_roots(data_dir)]
    rows = []
    for name in KNOWN_DATASETS:
        path = locate(name, data_dir)
        rows.append({"name": name, "found": path is not None, "path": str(path) if path else None,
                     "searched": searched})
    return rows


# --------------------------------------------------------------------------------------------------
# Downloading


def _download_file(url: str, dest: Path) -> None:
    """Stream `url` into `dest`. Tests replace this function; it is the only place that goes online."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.split(".part")[0],
                  disable=None) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_message(known: _Known, url: str, reason: object, data_dir) -> str:
    files = ", ".join(f for f, _ in known.downloads)
    places = ", ".join(str(r) for r in _search_roots(data_dir))
    hint = (" (or run `apt-get install dataset-fashion-mnist`)" if known.name == "fashion-mnist" else "")
    return (f"cannot download {known.name} from {url} ({reason}); looked for it in {places}; "
            f"put {files} into <one of those folders>/{known.name}/{hint}")


def _fetch_file(known: _Known, filename: str, md5: str, dest: Path, data_dir) -> None:
    """Download one file next to `dest`, check its md5, then move it into place."""
    url = known.url + filename
    fd, tmp_name = tempfile.mkstemp(prefix=f"{filename}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _download_file(url, tmp)
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            raise ResnetlabError(_offline_message(known, url, getattr(e, "reason", e), data_dir)) from None
        except OSError as e:
            raise ResnetlabError(f"cannot write {tmp}: {e.strerror or e}; free some space or pass "
                                 f"--data-dir to another folder") from None
        actual = _md5(tmp)
        if actual != md5:
            raise ResnetlabError(
                f"{dest}: downloaded from {url} with md5 {actual}, expected {md5}; the download was "
                f"damaged: retry `resnetlab data fetch {known.name}`, or download the file by hand "
                f"into {dest.parent}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(name: str, data_dir: str | Path | None = None) -> Path:
    """Make the known data set `name` available and return where it is (as `locate` would).

    If it is already on disk nothing is downloaded. Otherwise the official files are downloaded into
    <first writable of data_dir, $RESNETLAB_DATA, user cache>/<name>/ and md5-checked.
    """
    known = _known(name)
    found = locate(known.name, data_dir)
    if found is not None:
        return found
    root = _first_writable(_user_roots(data_dir))
    if root is None:
        places = ", ".join(str(r) for r in _user_roots(data_dir))
        raise ResnetlabError(f"cannot download {known.name}: none of {places} is writable; "
                             f"pass --data-dir (or set RESNETLAB_DATA) to a writable folder")
    folder = root / known.name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in known.downloads:
        dest = folder / filename
        if dest.is_file() and _md5(dest) == md5:  # kept from an earlier, interrupted fetch
            continue
        _fetch_file(known, filename, md5, dest, data_dir)
    return folder / known.archive if known.archive else folder



# --------------------------------------------------------------------------------------------------
# Image folders: find the path, then the decoded-folder cache or the images themselves


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


def _load_folder(spec, data_dir, image_size, split_fraction, seed) -> DataSplits:
    path = folder_path(spec)
    # An archive's key needs only a stat, so a cached archive is never even listed.
    index = None if is_archive(path) else scan_image_folder(path, split_fraction, seed)
    key = cache_key(path, index, image_size, split_fraction, seed)
    roots = _user_roots(data_dir)
    cached = load_cache(key, roots)
    if cached is not None:
        log.info("loaded %s from the decoded-image cache", path)
        train, test, classes = cached
    else:
        index = index or scan_image_folder(path, split_fraction, seed)
        train, test = decode_index(index, image_size, str(path))
        classes = list(index.classes)
        save_cache(key, _first_writable(roots), train, test, classes, str(path))
    return DataSplits(str(spec), ImageSet(*train, list(classes)), ImageSet(*test, list(classes)),
                      list(classes), str(path))


# --------------------------------------------------------------------------------------------------
# The entry point


def _resize_splits(splits: DataSplits, image_size: int) -> DataSplits:
    for s in (splits.train, splits.test):
        s.images = fit_square(s.images, image_size) if len(s) else s.images
    return splits


def load_dataset(spec: str | Path, data_dir: str | Path | None = None, download: bool = True,
                 image_size: int | None = None, split_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Load a known data set by name, or a class-folder data set from a folder or archive path.

    Names: mnist, fashion-mnist, cifar10, cifar100 (spelling variants like FashionMNIST work; write
    ./cifar10 for a folder of that name). A missing known data set is downloaded if `download`.
    `image_size`, when given, resizes the shorter side and centre-crops a square; folders whose
    images differ in size get DEFAULT_IMAGE_SIZE when it is not given. Folders without train/ and
    val/ hold out `split_fraction` of each class (chosen with `seed`).
    """
    name = None if isinstance(spec, Path) else _canonical_name(str(spec))
    if name is None:
        return _load_folder(spec, data_dir, image_size, split_fraction, seed)
    known = _KNOWN[name]
    place = locate(name, data_dir)
    if place is None:
        if not download:
            places = ", ".join(str(r) for r in _search_roots(data_dir))
            raise ResnetlabError(f"{name} not found in {places}; run `resnetlab data fetch {name}` "
                                 f"or put its files into one of those folders under {name}/")
        place = fetch(name, data_dir)
    if known.kind == "idx":
        classes = list(known.classes)
        train = ImageSet(*load_idx_split(place, known.train, len(classes)), classes)
        test = ImageSet(*load_idx_split(place, known.test, len(classes)), classes)
    else:
        classes, parts = load_cifar(place, known.layout_dirs[0], known.meta, (known.train, known.test))
        train, test = (ImageSet(images, labels, classes) for images, labels in parts)
    splits = DataSplits(name, train, test, classes, str(place))
    return _resize_splits(splits, image_size) if image_size else splits


def restrict(splits: DataSplits, classes: list[int] | None = None, per_class: int | None = None,
             seed: int = 0) -> DataSplits:
    """Only the given classes (relabelled 0..k-1 in the order given), and at most `per_class`
    training images of each (a fixed random choice per seed): for transfer-learning studies."""
    if not classes and not per_class:
        return splits
    if not isinstance(splits.train, ImageSet):
        raise ResnetlabError("--classes / --per-class need the data in memory; use --stream off")
    names = splits.classes
    classes = list(classes) if classes else list(range(len(names)))
    bad = [c for c in classes if not 0 <= c < len(names)]
    if bad or len(set(classes)) != len(classes):
        raise ResnetlabError(f"--classes {classes}: give distinct class indices in 0..{len(names) - 1}")
    mapping = torch.full((len(names),), -1, dtype=torch.int64)
    mapping[classes] = torch.arange(len(classes))
    kept = [names[c] for c in classes]

    def pick(part: ImageSet, limit: int | None) -> ImageSet:
        new = mapping[part.labels]
        index = (new >= 0).nonzero().flatten()
        if limit:
            gen = torch.Generator().manual_seed(seed + 104729)
            chosen = []
            for c in range(len(classes)):
                members = index[new[index] == c]
                if len(members) < limit:
                    raise ResnetlabError(f"class {kept[c]!r} has {len(members)} training images, fewer "
                                         f"than --per-class {limit}")
                chosen.append(members[torch.randperm(len(members), generator=gen)[:limit]])
            index = torch.cat(chosen).sort().values
        sub = part.subset(index)
        return ImageSet(sub.images, mapping[sub.labels], kept)

    return DataSplits(splits.name, pick(splits.train, per_class), pick(splits.test, None), kept,
                      splits.source)

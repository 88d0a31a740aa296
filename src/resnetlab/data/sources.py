"""Readers for real image data sets, held in memory as uint8 tensors.

Two kinds of source:

* the known data sets (MNIST, Fashion-MNIST as IDX files; CIFAR-10/100 as the official python pickles),
  found on disk in the usual layouts (torchvision's, Debian's, the official archives) or downloaded
  from their official addresses with an md5 check;
* a folder (or a .tar/.tar.gz of one) with one sub-folder per class, optionally split into train/ and
  val/ (or test/), decoded once and cached as safetensors.

Everything a user can get wrong (missing files, damaged files, a bad folder layout) ends in one
ResnetlabError line that names the file and the fix.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import importlib
import io
import json
import logging
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import ResnetlabError
from ..paths import cache_root

log = logging.getLogger(__name__)

KNOWN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")

# Searched after data_dir, $RESNETLAB_DATA and the user cache. Debian's dataset-fashion-mnist package
# installs /usr/share/datasets/fashion-mnist/*.gz, i.e. the `<root>/<name>/` layout under this root.
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

DOWNLOAD_TIMEOUT = 15  # seconds without an answer before a download counts as offline
DEFAULT_IMAGE_SIZE = 256  # side of the square images when a folder's images differ in size
MAX_BAD_FRACTION = 0.01  # more unreadable images than this means the folder is broken, not noisy
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEST_DIR_NAMES = ("val", "valid", "validation", "test")  # first one present is the held-out set
_CACHE_VERSION = 1  # bump when the cached tensors would come out differently


# --------------------------------------------------------------------------------------------------
# Containers


@dataclass
class ImageSet:
    """Images and labels of one split: `images` uint8 N x C x H x W (contiguous), `labels` int64 N."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self):
        # Programming errors, not user errors: every reader below builds these tensors itself.
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

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


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
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
        return all(_idx_file(place, stem) for stem in known.needed)
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
# IDX files (MNIST, Fashion-MNIST)


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


def _load_idx_split(folder: Path, stems: tuple[str, str], classes: list[str]) -> ImageSet:
    image_path, label_path = (_idx_file(folder, s) for s in stems)
    if image_path is None or label_path is None:
        raise ResnetlabError(f"{folder}: missing {stems[0]}(.gz) or {stems[1]}(.gz)")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ResnetlabError(f"{image_path}: expected images N x H x W, got shape {tuple(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ResnetlabError(f"{label_path}: {tuple(labels.shape)} labels for {len(images)} images in "
                             f"{image_path.name}; the two files do not belong together")
    _check_label_range(labels, len(classes), label_path)
    return ImageSet(images.unsqueeze(1).contiguous(), labels.long(), classes)


def _check_label_range(labels: torch.Tensor, num_classes: int, where) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ResnetlabError(f"{where}: labels range {int(labels.min())}..{int(labels.max())} but there "
                             f"are {num_classes} classes; the file is damaged or from another data set")


# --------------------------------------------------------------------------------------------------
# CIFAR python pickles


def _numpy_reconstruct():
    # numpy 2 renamed numpy.core to numpy._core; pickles written under either name must load.
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError("numpy has no multiarray._reconstruct")


def _codecs_encode():
    import codecs

    return codecs.encode


# The only globals an official CIFAR batch refers to: what numpy needs to rebuild an array.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays, lists and dicts, and refuses any other global.

    A pickle runs whatever callables its globals name; refusing them all (but numpy's array
    rebuilding) means a malicious file cannot execute code.
    """

    def find_class(self, module: str, name: str):
        resolve = _PICKLE_ALLOWED.get((module, name))
        if resolve is None:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return resolve()


def _unpickle(source, label: str):
    opened = None
    try:
        if isinstance(source, (str, Path)):
            opened = source = open(source, "rb")
        return _ArrayOnlyUnpickler(source, encoding="bytes").load()
    except _ForbiddenGlobal as e:
        raise ResnetlabError(f"{label}: refusing to unpickle: it asks for {e}, which a CIFAR file never "
                             f"contains (the file may be malicious); use the official archive") from None
    except OSError as e:
        raise ResnetlabError(f"cannot read {label}: {e.strerror or e}") from None
    except Exception as e:  # whatever fails inside a pickle, the file is damaged
        raise ResnetlabError(f"{label}: not a CIFAR python pickle ({type(e).__name__}: {e}); delete it "
                             f"and download it again") from None
    finally:
        if opened is not None:
            opened.close()


def _get(mapping: dict, *keys: str):
    """mapping[key] for the first key present as bytes (official files) or str."""
    for key in keys:
        for k in (key.encode(), key):
            if k in mapping:
                return mapping[k]
    return None


def _source_label(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else str(getattr(source, "name", "CIFAR batch"))


def read_cifar_batch(source) -> tuple[torch.Tensor, torch.Tensor]:
    """A CIFAR-10/100 python batch (a path or binary file object) as images N x 3 x 32 x 32 uint8 and
    labels int64 (CIFAR-10's `labels`, CIFAR-100's `fine_labels`)."""
    label = _source_label(source)
    batch = _unpickle(source, label)
    if not isinstance(batch, dict):
        raise ResnetlabError(f"{label}: expected a dict with 'data' and 'labels', got "
                             f"{type(batch).__name__}; this is not a CIFAR batch")
    data, labels = _get(batch, "data"), _get(batch, "labels", "fine_labels")
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise ResnetlabError(f"{label}: keys {keys} lack 'data' or 'labels'/'fine_labels'; "
                             f"this is not a CIFAR batch")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise ResnetlabError(f"{label}: 'data' must be uint8 N x 3072 (three 32x32 planes), got {shape}; "
                             f"the file is damaged or not from CIFAR")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ResnetlabError(f"{label}: {labels.shape} labels of type {labels.dtype} for {len(data)} "
                             f"images; the file is damaged")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def _read_cifar_meta(source, key: str) -> list[str]:
    label = _source_label(source)
    meta = _unpickle(source, label)
    names = _get(meta, key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise ResnetlabError(f"{label}: no '{key}' list of class names; the file is damaged")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _tar_error(path: Path, e: Exception) -> ResnetlabError:
    return ResnetlabError(f"{path}: damaged or unreadable archive ({type(e).__name__}: {e}); delete it "
                          f"and download it again")


def _read_tar_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the members named in `wanted` (normalized names), in one sequential pass."""
    found = {}
    try:
        with tarfile.open(path, "r|*") as tar:  # streaming: a .tar.gz is decompressed once
            for member in tar:
                name = _normalize_member(member.name)
                if member.isfile() and name in wanted:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise _tar_error(path, e) from None
    return found


def _load_cifar(known: _Known, place: Path) -> tuple[ImageSet, ImageSet, list[str]]:
    if place.is_file():  # the official archive, read without extracting
        top = known.layout_dirs[0]
        blobs = _read_tar_members(place, {f"{top}/{f}" for f in known.needed})
        missing = [f for f in known.needed if f"{top}/{f}" not in blobs]
        if missing:
            raise ResnetlabError(f"{place}: archive lacks {top}/{missing[0]}; it is incomplete: delete it "
                                 f"and download it again")

        def open_member(f):
            stream = io.BytesIO(blobs[f"{top}/{f}"])
            stream.name = f"{place}:{top}/{f}"  # so errors name the member
            return stream
    else:
        def open_member(f):
            return place / f

    classes = _read_cifar_meta(open_member(known.meta[0]), known.meta[1])
    splits = []
    for files in (known.train, known.test):
        parts = [read_cifar_batch(open_member(f)) for f in files]
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        _check_label_range(labels, len(classes), f"{place} ({', '.join(files)})")
        splits.append(ImageSet(images, labels, classes))
    return splits[0], splits[1], classes


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


def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and centre-crop a square (single image or batch)."""
    if image.shape[-2:] == (size, size):
        return image
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image, [size], antialias=True)
    return F.center_crop(image, [size, size]).contiguous()


# --------------------------------------------------------------------------------------------------
# Image folders


def _normalize_member(name: str) -> str:
    """A tar member name without "./", empty parts ("test//x") or trailing slashes."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz"))


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
            raise _tar_error(Path(self.archive), e) from None
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
                name = _normalize_member(member.name)
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
        raise _tar_error(path, e) from None
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
    elif _is_archive(path):
        files, folders, members = _walk_archive(path)
        archive = str(path)
    else:
        raise ResnetlabError(f"{path}: not a folder or a .tar/.tar.gz/.tgz archive of one; give a known "
                             f"data set ({', '.join(KNOWN_DATASETS)}) or a folder of class sub-folders")
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


def _decode_index(index: FolderIndex, image_size: int | None, where: str) -> tuple[ImageSet, ImageSet]:
    """Decode every image of the index into two ImageSets, skipping (and counting) unreadable ones."""
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
                decoded = {k: _fit(v, target) for k, v in decoded.items()}
        decoded[key] = _fit(image, target) if target else image
    _report_failures(failed, len(keys), where)
    if not decoded:
        raise ResnetlabError(f"{where}: no image could be decoded")
    channels = 3 if any(v.shape[0] == 3 for v in decoded.values()) else 1  # gray only if all are gray
    shape = (channels, *next(iter(decoded.values())).shape[1:])

    def stack(items) -> ImageSet:
        kept = [(decoded[k], label) for k, label in items if k in decoded]
        if not kept:
            return ImageSet(torch.empty((0, *shape), dtype=torch.uint8),
                            torch.empty(0, dtype=torch.int64), list(index.classes))
        images = torch.stack([img.expand(channels, -1, -1) for img, _ in kept])
        return ImageSet(images, torch.tensor([label for _, label in kept], dtype=torch.int64),
                        list(index.classes))

    return stack(index.train), stack(index.test)


def _report_failures(failed: list[str], total: int, where: str) -> None:
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


def _cache_key(path: Path, index: FolderIndex | None, image_size, split_fraction, seed) -> str:
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


def _cache_files(key: str, data_dir, create: bool) -> tuple[Path, Path] | None:
    roots = _user_roots(data_dir)
    root = _first_writable(roots) if create else next(
        (r for r in roots if (r / "folders" / f"{key}.safetensors").is_file()), None)
    if root is None:
        return None
    folder = root / "folders"
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def _load_cache(key: str, data_dir) -> tuple[ImageSet, ImageSet, list[str]] | None:
    files = _cache_files(key, data_dir, create=False)
    if files is None:
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        classes = json.loads(files[1].read_text())["classes"]
        # Read the bytes rather than mmap the file: the tensors then own their memory and cannot be
        # disturbed by another process rewriting the cache.
        tensors = load(files[0].read_bytes())
        splits = tuple(ImageSet(tensors[f"{s}_images"], tensors[f"{s}_labels"], list(classes))
                       for s in ("train", "test"))
        for s in splits:
            _check_label_range(s.labels, len(classes), files[0])
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, ResnetlabError) as e:
        log.warning("ignoring damaged cache %s (%s); decoding the images again", files[0], e)
        return None
    return splits[0], splits[1], list(classes)


def _save_cache(key: str, data_dir, train: ImageSet, test: ImageSet, source: str) -> None:
    files = _cache_files(key, data_dir, create=True)
    if files is None:
        return
    from safetensors.torch import save_file

    tensors = {"train_images": train.images, "train_labels": train.labels,
               "test_images": test.images, "test_labels": test.labels}
    meta = {"classes": train.classes, "source": source, "version": _CACHE_VERSION}
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


def _load_folder(spec, data_dir, image_size, split_fraction, seed) -> DataSplits:
    path = Path(spec).expanduser()
    if not path.exists():
        raise ResnetlabError(f"{spec}: no such folder or archive; give a known data set "
                             f"({', '.join(KNOWN_DATASETS)}) or a folder of class sub-folders")
    path = path.resolve()
    # An archive's key needs only a stat, so a cached archive is never even listed.
    index = None if _is_archive(path) else scan_image_folder(path, split_fraction, seed)
    key = _cache_key(path, index, image_size, split_fraction, seed)
    cached = _load_cache(key, data_dir)
    if cached is not None:
        log.info("loaded %s from the decoded-image cache", path)
        train, test, classes = cached
    else:
        index = index or scan_image_folder(path, split_fraction, seed)
        train, test = _decode_index(index, image_size, str(path))
        classes = list(index.classes)
        _save_cache(key, data_dir, train, test, str(path))
    return DataSplits(str(spec), train, test, classes, str(path))


# --------------------------------------------------------------------------------------------------
# The entry point


def _resize_splits(splits: DataSplits, image_size: int) -> DataSplits:
    for s in (splits.train, splits.test):
        s.images = _fit(s.images, image_size) if len(s) else s.images
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
        train = _load_idx_split(place, known.train, classes)
        test = _load_idx_split(place, known.test, classes)
    else:
        train, test, classes = _load_cifar(known, place)
    splits = DataSplits(name, train, test, classes, str(place))
    return _resize_splits(splits, image_size) if image_size else splits

"""The known data sets (MNIST and Fashion-MNIST as IDX files, CIFAR-10/100 as the official python
pickles): where their files are found on disk (the usual layouts: torchvision's, Debian's, the
official archives), how they are downloaded from their official addresses with an md5 check, and
`load_known`, which reads one into memory through `idx` or `cifar`. Everything a user can get wrong
(missing or damaged files) ends in one ResnetlabError line that names the file and the fix.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResnetlabError
from ..paths import cache_root
from .cifar import load_cifar
from .idx import idx_file, load_idx_split
from .splits import DataSplits, ImageSet

KNOWN_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")

# Searched after data_dir, $RESNETLAB_DATA and the user cache. Debian's dataset-fashion-mnist package
# installs /usr/share/datasets/fashion-mnist/*.gz, i.e. the `<root>/<name>/` layout under this root.
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)

DOWNLOAD_TIMEOUT = 15  # seconds without an answer before a download counts as offline


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


def canonical_name(spec: str) -> str | None:
    """The known data set `spec` names ("FashionMNIST", "cifar_10", ...), or None for a path."""
    if "/" in spec or os.sep in spec:
        return None
    squashed = spec.lower().replace("-", "").replace("_", "")
    return {name.replace("-", ""): name for name in KNOWN_DATASETS}.get(squashed)


def _known(name: str) -> _Known:
    canonical = canonical_name(str(name))
    if canonical is None:
        raise ResnetlabError(f"unknown data set {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    return _KNOWN[canonical]


# --------------------------------------------------------------------------------------------------
# Finding files


def user_roots(data_dir: str | Path | None) -> list[Path]:
    """Roots the user controls, in search order: data_dir, $RESNETLAB_DATA, the user cache."""
    roots = [Path(data_dir).expanduser()] if data_dir else []
    if os.environ.get("RESNETLAB_DATA"):
        roots.append(Path(os.environ["RESNETLAB_DATA"]).expanduser())
    roots.append(cache_root())
    return list(dict.fromkeys(roots))  # drop repeats, keep order


def search_roots(data_dir: str | Path | None) -> list[Path]:
    return list(dict.fromkeys(user_roots(data_dir) + list(SYSTEM_ROOTS)))


def first_writable(roots: Iterable[Path]) -> Path | None:
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
    for root in search_roots(data_dir):
        for place in _candidates(known, root):
            if _is_complete(known, place):
                return place
    return None


def list_sources(data_dir: str | Path | None = None) -> list[dict]:
    """One row per known data set: name, found, path (or None), searched (the roots, in order)."""
    searched = [str(r) for r in search_roots(data_dir)]
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
    places = ", ".join(str(r) for r in search_roots(data_dir))
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
    root = first_writable(user_roots(data_dir))
    if root is None:
        places = ", ".join(str(r) for r in user_roots(data_dir))
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
# Reading one into memory


def load_known(name: str, data_dir: str | Path | None = None, download: bool = True) -> DataSplits:
    """The known data set `name` (canonical) in memory: found on disk, else downloaded if `download`."""
    known = _KNOWN[name]
    place = locate(name, data_dir)
    if place is None:
        if not download:
            places = ", ".join(str(r) for r in search_roots(data_dir))
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
    return DataSplits(name, train, test, classes, str(place))

"""CIFAR-10/100 as the official python pickles, from their folder or read in place from the official
.tar.gz, with an unpickler that can build numpy arrays and nothing else.

Readers here return plain tensors; `known` wraps them into ImageSets and knows where the files are.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import ResnetlabError
from .archive import read_tar_members
from .idx import check_label_range


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
        keys = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in batch)
        raise ResnetlabError(f"{label}: keys {keys} lack 'data' or 'labels'/'fine_labels'; "
                             f"this is not a CIFAR batch")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise ResnetlabError(f"{label}: 'data' must be uint8 N x 3072 (three 32x32 planes), got {shape}; "
                             f"the file is damaged or not from CIFAR")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise ResnetlabError(f"{label}: the labels are not a list of integers ({e}); "
                             "the file is damaged") from None
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


def load_cifar(place: Path, top: str, meta: tuple[str, str], splits: tuple[tuple[str, ...], ...]
               ) -> tuple[list[str], list[tuple[torch.Tensor, torch.Tensor]]]:
    """A CIFAR data set from its folder `place`, or from the official archive `place` whose files lie
    under `top/` (read in place, not extracted).

    meta: (meta file, key of the class names); splits: the batch files of each split, e.g.
    (train files, test files). Returns the class names and (images, labels) per split.
    """
    needed = tuple(f for files in splits for f in files) + (meta[0],)
    if place.is_file():  # the official archive, read without extracting
        blobs = read_tar_members(place, {f"{top}/{f}" for f in needed})
        missing = [f for f in needed if f"{top}/{f}" not in blobs]
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

    classes = _read_cifar_meta(open_member(meta[0]), meta[1])
    out = []
    for files in splits:
        parts = [read_cifar_batch(open_member(f)) for f in files]
        images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        check_label_range(labels, len(classes), f"{place} ({', '.join(files)})")
        out.append((images, labels))
    return classes, out

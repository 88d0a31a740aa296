"""The decoded-folder cache: a folder's decoded images as safetensors, keyed by a hash of everything
they depend on, so a folder is decoded once. A damaged cache is ignored (and decoded again), a
read-only one skipped: caching never fails a load."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from ..errors import ResnetlabError
from .idx import check_label_range

log = logging.getLogger(__name__)

_CACHE_VERSION = 1  # bump when the cached tensors would come out differently

Pair = tuple[torch.Tensor, torch.Tensor]  # uint8 images N x C x H x W, int64 labels N


def cache_key(path: Path, files: list[str] | None, image_size, split_fraction, seed) -> str:
    """A hash of everything the decoded tensors depend on. `files`: a folder's image files (their
    sizes and times stand for their contents); None for an archive (its own size and time do)."""
    if files is None:
        st = path.stat()
        contents: object = [st.st_size, st.st_mtime_ns]
    else:
        contents = []
        for key in files:
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

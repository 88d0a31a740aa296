"""Data: `open_data(spec)` (open.py) is the entry; readers by format (idx, cifar, folders + decode +
cache, stream) return uint8 images in `ImageSet`/`DataSplits` (splits.py); loader.py and augment.py
turn them into batches."""

from .cifar import read_cifar_batch
from .decode import decode_image
from .folders import FolderIndex, scan_image_folder
from .idx import read_idx
from .known import KNOWN_DATASETS, fetch, list_sources, locate
from .open import load_dataset, open_data
from .splits import DataSplits, ImageSet

__all__ = [
    "KNOWN_DATASETS", "DataSplits", "FolderIndex", "ImageSet", "decode_image", "fetch", "list_sources",
    "load_dataset", "locate", "open_data", "read_cifar_batch", "read_idx", "scan_image_folder",
]

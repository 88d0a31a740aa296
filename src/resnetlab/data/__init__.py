"""Data: readers for real image data sets (sources), held in memory as uint8 tensors."""

from .sources import (
    KNOWN_DATASETS,
    DataSplits,
    FolderIndex,
    ImageSet,
    decode_image,
    fetch,
    list_sources,
    load_dataset,
    locate,
    read_cifar_batch,
    read_idx,
    scan_image_folder,
)

__all__ = [
    "KNOWN_DATASETS", "DataSplits", "FolderIndex", "ImageSet", "decode_image", "fetch", "list_sources",
    "load_dataset", "locate", "read_cifar_batch", "read_idx", "scan_image_folder",
]

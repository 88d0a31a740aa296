"""Batch iterators over in-memory uint8 images, reproducible from (seed, epoch, batch).

The epoch's order is one permutation drawn from a generator seeded by (seed, epoch), and each
batch's augmentation from a generator seeded by (seed, epoch, batch): any batch of any epoch can be
rebuilt on its own, so a run resumed mid-epoch sees exactly the batches it would have seen. With
several processes the global batch is cut into equal per-rank slices, and every random draw is
made for the whole global batch and sliced the same way (BatchRandom): N processes see exactly the
inputs one process would.

`stream.StreamingLoader` is a BatchLoader whose images are decoded from an image folder in worker
processes; it shares `batches` and `inputs`, so both yield the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import ResnetlabError
from .augment import (
    PAPER_SCALE,
    BatchRandom,
    Normalizer,
    alternating_flip,
    batch_seed,
    center_crop,
    random_crop,
    random_flip,
    resize_shorter,
    scale_crop_flip,
    ten_crop,
)

AUGMENTS = ("none", "flip", "alt-flip", "pad-crop", "pad-crop-flip", "scale-crop-flip")
EVAL_VIEWS = ("none", "center", "ten-crop", "flip")


@dataclass(frozen=True)
class View:
    """How images become network inputs: the training augmentation or the evaluation view.

    kind: one of AUGMENTS for training; one of EVAL_VIEWS for evaluation. "flip" is both: with a
    generator (training) a random half of the batch is mirrored; without one (evaluation) every
    image is seen as itself and mirrored. "alt-flip" (training only) mirrors each image on every
    other epoch, starting from a random choice per image (the loader passes `first` and `epoch`).
    size: output side in pixels (None: the stored size). For "center" and "ten-crop" the shorter
    side is first resized to size * 256/224 (the usual 256 -> 224 test view) when the images are
    larger. "ten-crop" returns 10 x N images, crop-major (corners, centre, and their flips); the
    "flip" evaluation view 2 x N (the images as "none" gives them, then their mirrors).
    """

    kind: str = "none"
    pad: int = 4
    size: int | None = None
    scale: tuple[float, float] = PAPER_SCALE
    pca_lighting: float = 0.0

    def __post_init__(self):
        if self.kind not in AUGMENTS + EVAL_VIEWS:
            raise ResnetlabError(f"unknown augmentation {self.kind!r}; choose from {', '.join(AUGMENTS)}")


# AlexNet-style colour augmentation (the paper cites it for ImageNet): PCA of ImageNet RGB pixels.
_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def apply_view(x: torch.Tensor, view: View, gen: BatchRandom | torch.Generator | None,
               normalizer: Normalizer, channels_last: bool, first: torch.Tensor | None = None,
               epoch: int = 0) -> torch.Tensor:
    """uint8 batch (on its device) -> normalised float network input. `gen` None: an evaluation
    view (no random draws). `first`, `epoch`: the "alt-flip" augmentation's per-image start and
    the epoch."""
    evaluation = gen is None
    if gen is not None and not isinstance(gen, BatchRandom):
        gen = BatchRandom(gen, x.shape[0])
    h, w = x.shape[-2:]
    size = view.size or min(h, w)
    if view.kind in ("pad-crop", "pad-crop-flip"):
        x = random_crop(x, (size, size) if view.size else (h, w), view.pad, gen)
    if view.kind == "pad-crop-flip" or (view.kind == "flip" and not evaluation):
        x = random_flip(x, gen)
    if view.kind == "alt-flip" and not evaluation:
        if first is None:
            raise ValueError("the alt-flip augmentation needs each image's first flip (`first`)")
        x = alternating_flip(x, first, epoch)
    x = normalizer(x)
    if view.kind == "scale-crop-flip":
        x = scale_crop_flip(x, size, gen, view.scale)
        if view.pca_lighting and x.shape[1] == 3:
            alpha = gen.randn(3) * view.pca_lighting
            rgb = (alpha * _EIGVAL) @ _EIGVEC.T              # N x 3 offset per image
            x = x + (rgb / normalizer.std.flatten()[:3].cpu()).to(x)[:, :, None, None]
    elif view.kind in ("center", "ten-crop"):
        if min(h, w) > size:
            x = resize_shorter(x, round(size * 256 / 224))
        x = center_crop(x, size) if view.kind == "center" else ten_crop(x, size).flatten(0, 1)
    elif view.kind == "flip" and evaluation:
        # Mirrored after normalising, as ten_crop does: a per-pixel mean map is mirrored with the image.
        x = torch.cat([x, x.flip(-1)])
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class BatchLoader:
    """Batches of an in-memory ImageSet.

    train=True: shuffled, augmented, incomplete last batch dropped (every step has the same batch
    size, as the paper's iteration counts assume). train=False: in order, every image once.
    `batch_size` is the global batch; with world_size > 1 each rank gets batch_size / world_size.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
                 view: View, normalizer: Normalizer, device: torch.device | str = "cpu",
                 channels_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 dtype: torch.dtype = torch.float32):
        if batch_size % world_size:
            raise ResnetlabError(f"batch size {batch_size} is not divisible by {world_size} processes")
        if train and len(labels) < batch_size:
            raise ResnetlabError(f"the training set has {len(labels)} images, fewer than one batch of "
                                 f"{batch_size}; lower --batch-size")
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.view = batch_size, train, view
        self.normalizer = normalizer.to(device)
        self.device = torch.device(device)
        self.channels_last, self.seed, self.dtype = channels_last, seed, dtype
        self.rank, self.world_size = rank, world_size
        # alt-flip: whether each image is mirrored in even epochs, one draw per run (its seed)
        self.first_flip = (torch.randint(0, 2, (len(labels),), dtype=torch.bool,
                                         generator=torch.Generator().manual_seed(batch_seed(seed, -1, -2)))
                           if train and view.kind == "alt-flip" else None)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.train:
            return torch.arange(len(self.labels))
        gen = torch.Generator().manual_seed(batch_seed(self.seed, epoch, -1))
        return torch.randperm(len(self.labels), generator=gen)

    def batches(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        """(batch number, indices of this rank's images) for batches start, start+1, ... of `epoch`."""
        order = self.order(epoch)
        local = self.batch_size // self.world_size
        for b in range(start, len(self)):
            if self.train:
                lo = b * self.batch_size + self.rank * local
                yield b, order[lo:lo + local]
            else:
                yield b, order[b * self.batch_size:(b + 1) * self.batch_size]

    def inputs(self, x: torch.Tensor, y: torch.Tensor, epoch: int, b: int, idx: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `b` of `epoch` as the network sees it: uint8 images `x` and labels `y` moved to the
        device, augmented (with the batch's own generator) and normalised. `idx`: the images'
        indices in the set (needed by alt-flip)."""
        non_blocking = self.device.type == "cuda"
        gen = None
        if self.train:
            # One generator per global batch, the same on every rank; each rank takes its slice.
            local = self.batch_size // self.world_size
            gen = BatchRandom(torch.Generator().manual_seed(batch_seed(self.seed, epoch, b)),
                              self.batch_size, self.rank * local, local)
        x = x.to(self.device, non_blocking=non_blocking)
        y = y.to(self.device, non_blocking=non_blocking)
        first = None if self.first_flip is None else self.first_flip[idx]
        x = apply_view(x, self.view, gen, self.normalizer, self.channels_last, first, epoch)
        return (x if x.dtype == self.dtype else x.to(self.dtype)), y

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, labels) on the device for batches start, start+1, ... of `epoch`."""
        for b, idx in self.batches(epoch, start):
            yield self.inputs(self.images[idx], self.labels[idx], epoch, b, idx)

"""Augmentation on whole batches as tensor ops (no per-image Python loop).

Images stay uint8 until the end: the crop is a single gather, the flip a `torch.where`, and the
conversion to float + normalisation happens once on the device that trains. Every function takes
an explicit torch.Generator so a batch's augmentation is reproducible from (seed, epoch, batch)
alone, which is what makes resuming a run bit-exact.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F


class BatchRandom:
    """The random numbers of one slice of a global batch.

    Every draw is made for the whole global batch (`total` images) from one generator and then
    sliced to this process's images [start, start + count): the augmentation of an image does not
    depend on how many processes share its batch, so 1 process with batch B and N processes with
    B/N each see exactly the same inputs.
    """

    def __init__(self, gen: torch.Generator, total: int, start: int = 0, count: int | None = None):
        self.gen, self.total, self.start = gen, total, start
        self.count = total - start if count is None else count

    def _slice(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.start:self.start + self.count]

    def rand(self, *shape: int) -> torch.Tensor:
        return self._slice(torch.rand(self.total, *shape, generator=self.gen))

    def randn(self, *shape: int) -> torch.Tensor:
        return self._slice(torch.randn(self.total, *shape, generator=self.gen))

    def randint(self, low: int, high: int) -> torch.Tensor:
        return self._slice(torch.randint(low, high, (self.total,), generator=self.gen))

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return self._slice(torch.empty(self.total).uniform_(low, high, generator=self.gen))


def _random(rng: BatchRandom | torch.Generator, n: int) -> BatchRandom:
    r = rng if isinstance(rng, BatchRandom) else BatchRandom(rng, n)
    if r.count != n:
        raise ValueError(f"random numbers for {r.count} images, but the batch has {n}")
    return r


def random_crop(x: torch.Tensor, size: tuple[int, int], pad: int, gen: BatchRandom | torch.Generator,
                fill: int = 0) -> torch.Tensor:
    """Zero-pad `pad` pixels on each side, then crop a random `size` window per image (the paper's
    CIFAR augmentation). One advanced-indexing gather for the whole batch; the result comes out
    channels-last in memory, which is what the convolutions want anyway."""
    n, _, h, w = x.shape
    th, tw = size
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=fill)
    rng = _random(gen, n)
    dy = rng.randint(0, h + 2 * pad - th + 1)
    dx = rng.randint(0, w + 2 * pad - tw + 1)
    # Offsets come from the CPU generator; the gather runs where the images are.
    rows = (dy[:, None] + torch.arange(th))[:, :, None].to(x.device)   # n x th x 1
    cols = (dx[:, None] + torch.arange(tw))[:, None, :].to(x.device)   # n x 1 x tw
    out = x[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]   # n x th x tw x C
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: BatchRandom | torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Horizontal flip of a random half of the batch."""
    return mirror(x, _random(gen, x.shape[0]).rand() < p)


def mirror(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The images of the batch whose `flip` (bool per image) is set, mirrored left-right."""
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)


def alternating_flip(x: torch.Tensor, first: torch.Tensor, epoch: int) -> torch.Tensor:
    """Mirror each image on every other epoch (airbench's "alternating flip"): image i is flipped in
    epoch e when first[i] xor (e odd), with `first` (bool per image of the batch) drawn once per run.
    Over any two consecutive epochs every image is seen both ways, where random flips leave a
    quarter of the images unmirrored (or mirrored) twice in a row."""
    return mirror(x, first ^ bool(epoch % 2))


def scale_crop_flip(x: torch.Tensor, size: int, gen: BatchRandom | torch.Generator,
                    scale: tuple[float, float],
                    flip: bool = True) -> torch.Tensor:
    """Scale augmentation for large images, on the whole batch with one `grid_sample`.

    The paper (ImageNet) resizes the shorter side to a random length L in [256, 480] and takes a
    random `size` crop; that is a square window of side size/L of the shorter side, at a random
    place, resampled to `size`. `scale` is (256/size, 480/size)-style: the range of L/size.
    Works on float input (N x C x H x W) and returns float.
    """
    n, _, h, w = x.shape
    short = min(h, w)
    rng = _random(gen, n)
    lengths = rng.uniform(scale[0], scale[1]) * size   # L per image
    # The window in normalised [-1, 1] coordinates: half-extent per axis.
    half_w = (size / lengths) * short / w
    half_h = (size / lengths) * short / h
    cx = (rng.rand() * 2 - 1) * (1 - half_w)
    cy = (rng.rand() * 2 - 1) * (1 - half_h)
    sign = torch.ones(n)
    if flip:
        sign = torch.where(rng.rand() < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = half_w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = half_h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def resize_shorter(x: torch.Tensor, length: int) -> torch.Tensor:
    """Resize a float batch so its shorter side is `length` (antialiased bilinear)."""
    h, w = x.shape[-2:]
    s = length / min(h, w)
    return F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                         align_corners=False)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's 10-crop test view: four corners and the centre, and their flips.
    Returns 10 x N x C x size x size; average the scores over the first axis."""
    h, w = x.shape[-2:]
    crops = [x[..., :size, :size], x[..., :size, w - size:], x[..., h - size:, :size],
             x[..., h - size:, w - size:], center_crop(x, size)]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops)


def crop_mean(scores: torch.Tensor, n: int) -> torch.Tensor:
    """The per-image mean of scores for k crops of n images given crop-major (k x n rows, the layout
    of ten_crop(...).flatten(0, 1)); n rows (one view per image) pass through unchanged. The one
    place multi-crop scores are averaged: evaluation, the report and predict all call it."""
    return scores.view(-1, n, scores.shape[-1]).mean(0) if scores.shape[0] != n else scores


NORMALIZATIONS = ("channel", "pixel-mean", "imagenet", "none")


class Normalizer(torch.nn.Module):
    """uint8 -> float, then (x - mean) / std. `mean` is per channel (C x 1 x 1) or per pixel
    (C x H x W, the paper's "per-pixel mean subtracted"); std 1 leaves the scale alone."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    @classmethod
    def fit(cls, images: torch.Tensor, kind: str) -> Normalizer:
        """Statistics from the training images (uint8 N x C x H x W), computed in chunks."""
        c = images.shape[1]
        if kind == "none":
            return cls(torch.zeros(c, 1, 1), torch.ones(c, 1, 1))
        if kind == "imagenet" and c == 3:
            return cls(torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                       torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))
        total = torch.zeros(images.shape[1:], dtype=torch.float64)
        total_sq = torch.zeros(c, dtype=torch.float64)
        for chunk in images.split(4096):
            f = chunk.double() / 255.0
            total += f.sum(0)
            total_sq += (f ** 2).sum((0, 2, 3))
        n = images.shape[0]
        pixel_mean = total / n
        channel_mean = pixel_mean.mean((1, 2))
        channel_std = (total_sq / (n * images.shape[2] * images.shape[3]) - channel_mean ** 2).sqrt()
        if kind == "pixel-mean":   # the paper: subtract the per-pixel mean, no scaling
            return cls(pixel_mean, torch.ones(c, 1, 1))
        if kind in ("channel", "imagenet"):
            return cls(channel_mean.view(c, 1, 1), channel_std.clamp_min(1e-3).view(c, 1, 1))
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {kind!r}")


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """A distinct, reproducible generator seed for every (seed, epoch, batch[, rank])."""
    key = f"{seed}:{epoch}:{batch}:{rank}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


# The paper's scale augmentation: shorter side in [256, 480] for 224 crops, as a ratio to the crop.
PAPER_SCALE = (256 / 224, 480 / 224)

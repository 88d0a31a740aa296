"""Class predictions for image files with a trained run, using the run's own preprocessing.

    predict("runs/r20", ["shirt.png", "photos/"], topk=3)
    -> [{"file": "shirt.png", "predictions": [{"class": "Shirt", "index": 6, "probability": 0.93}, ...]},
        ...]

A run is a run folder (its model.safetensors, or its latest checkpoint while unfinished) or one of
its `checkpoints/step-N` folders. Any image file `decode_image` reads (JPEG, PNG, BMP, GIF, WEBP,
TIFF; grayscale, RGB, RGBA, palette, 16-bit, CMYK) becomes the network input the run was evaluated
on (`TrainedRun.prepare`):

  channels   RGB -> gray by luminance (0.299 R + 0.587 G + 0.114 B) for a 1-channel run; gray ->
             3 equal channels for an RGB run; alpha dropped; 16-bit keeps the high byte
  geometry   runs evaluated with a "center" / "ten-crop" view (large stored images, e.g. the
             paper-imagenet recipe): shorter side to round(crop * 256/224) (or to crop when the
             stored images were no larger), then the centre crop (or the ten crops, whose
             probabilities are averaged as `resnetlab eval` does); every other run: the image is
             resized to the stored H x W (the input size), and for a "flip" run also mirrored, the
             two views' probabilities averaged. Bilinear, antialiased, in float.
  values     (pixel / 255 - mean) / std with the run's own statistics (preprocess.safetensors);
             a per-pixel mean follows the image through the same resize and centre crop (and is
             mirrored with a "flip" run's mirror, as its evaluation does).

Images are decoded in a few threads and go through the network in batches (fp32, BatchNorm folded
into the convolutions, channels_last).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .data.augment import Normalizer, center_crop, crop_mean, resize_shorter, ten_crop
from .data.decode import decode_image
from .data.folders import IMAGE_EXTENSIONS
from .errors import ResnetlabError
from .models.fold import fold_batchnorm
from .run import RunRecord, find_run, load_trained

LUMINANCE = (0.299, 0.587, 0.114)   # ITU-R BT.601, as PIL's convert("L")

SkipHandler = Callable[[str, str], None]


# --------------------------------------------------------------------------------------------------
# Loading a run


@dataclass
class TrainedRun:
    """A trained model with everything needed to feed it images as its run did."""

    model: torch.nn.Module          # eval mode
    classes: list[str]
    stored_size: tuple[int, int, int]   # C, H, W of the run's data as stored
    input_size: tuple[int, int, int]    # C, H, W the network was trained on
    normalizer: Normalizer          # the run's own statistics (at the stored size)
    view: str                       # the run's evaluation view: none | center | ten-crop | flip
    crop: int | None                # recipe crop_size
    run_dir: Path
    source: Path                    # the weights file
    record: RunRecord               # config.json

    @property
    def channels(self) -> int:
        return self.stored_size[0]

    @property
    def model_name(self) -> str:
        return self.record.config.model

    def inference_model(self, device: torch.device | str) -> torch.nn.Module:
        """The model in the form predictions use (see `inference_model`)."""
        return inference_model(self.model, device)

    # ---- geometry -----------------------------------------------------------------------------------

    @property
    def geometry(self) -> dict:
        """How an image of any size becomes the network input: {"mode": "resize", "size": [H, W]} or
        {"mode": "resize-shorter-center-crop", "shorter_side": S, "crop": [s, s]} (+ "ten_crop");
        a "flip" run's has "flip": the image and its mirror."""
        _, h, w = self.stored_size
        if self.view in ("center", "ten-crop"):
            size = self.crop or min(h, w)
            shorter = round(size * 256 / 224) if min(h, w) > size else size
            g = {"mode": "resize-shorter-center-crop", "shorter_side": shorter, "crop": [size, size]}
            if self.view == "ten-crop":
                g["ten_crop"] = True
            return g
        g = {"mode": "resize", "size": [h, w]}
        if self.view == "flip":
            g["flip"] = True
        return g

    @property
    def output_hw(self) -> tuple[int, int]:
        g = self.geometry
        return tuple(g["crop"] if "crop" in g else g["size"])

    def _fit(self, x: torch.Tensor, crops: bool = False) -> torch.Tensor:
        """Float N x C x H x W (pixels, or a statistics map) at any size -> the network's geometry."""
        g = self.geometry
        if g["mode"] == "resize":
            if tuple(x.shape[-2:]) != tuple(g["size"]):
                x = F.interpolate(x, size=tuple(g["size"]), mode="bilinear", antialias=True,
                                  align_corners=False)
            return torch.stack([x, x.flip(-1)]) if crops and g.get("flip") else x   # 2 x N x C x H x W
        if min(x.shape[-2:]) != g["shorter_side"]:
            x = resize_shorter(x, g["shorter_side"])
        size = g["crop"][0]
        if crops and g.get("ten_crop"):
            return ten_crop(x, size)          # 10 x N x C x size x size
        return center_crop(x, size)

    def input_normalizer(self) -> Normalizer:
        """The run's Normalizer at the network's input geometry: a per-pixel mean (or std) map is
        resized and centre-cropped like the image (normalising and resizing commute: both are
        affine per pixel and a resize preserves constants)."""
        stats = []
        for t in (self.normalizer.mean, self.normalizer.std):
            t = t.detach().float().cpu()
            if t.shape[-2:] != (1, 1):
                t = self._fit(t[None])[0].contiguous()
            stats.append(t)
        return Normalizer(*stats)

    # ---- one image ----------------------------------------------------------------------------------

    def to_channels(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (or float) C x H x W with C in {1, 3} -> float32 with the run's channel count."""
        x = image.float()
        if x.shape[0] == self.channels:
            return x
        if self.channels == 1 and x.shape[0] == 3:
            return (x * torch.tensor(LUMINANCE).view(3, 1, 1)).sum(0, keepdim=True)
        if self.channels == 3 and x.shape[0] == 1:
            return x.expand(3, -1, -1)
        raise ResnetlabError(f"cannot feed a {x.shape[0]}-channel image to a {self.channels}-channel model")

    def prepare(self, image: torch.Tensor, normalizer: Normalizer | None = None,
                crops: bool = True) -> torch.Tensor:
        """A decoded image (uint8 C x H x W, any size) -> the normalised float network input
        C x H x W, or 10 (2) x C x H x W for a ten-crop (flip) run (one view when not `crops`)."""
        x = self._fit(self.to_channels(image)[None], crops=crops)
        x = self.normalize(x, normalizer or self.input_normalizer())
        return x[:, 0] if x.ndim == 5 else x[0]

    def normalize(self, x: torch.Tensor, norm: Normalizer) -> torch.Tensor:
        """(pixels / 255 - mean) / std for `_fit`'s output. A flip view's mirrors get mirrored
        statistics: evaluation normalises first and mirrors after, which matters for a per-pixel mean.
        (Ten crops all get the centre crop's statistics, an approximation for a per-pixel mean.)"""
        mean, std = norm.mean, norm.std
        if x.ndim == 5 and self.geometry.get("flip"):
            mean, std = (torch.stack([t, t.flip(-1)])[:, None] for t in (mean, std))
        return (x / 255.0 - mean) / std


def load_run(path: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    """The model of a run folder or checkpoint (eval mode, on `device`) and its preprocessing."""
    run, weights = find_run(path)
    model, record, normalizer = load_trained(weights, device)
    recipe = record.config.recipe
    return TrainedRun(model=model, classes=list(record.classes), stored_size=record.stored_size,
                      input_size=record.input_size, normalizer=normalizer, view=recipe.eval_view,
                      crop=recipe.crop_size, run_dir=run.root, source=weights, record=record)


# --------------------------------------------------------------------------------------------------
# Finding and reading images


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """The files to predict: every path as given; a folder stands for its images (sorted by name,
    image extensions only, hidden files skipped, not recursive)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            images = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                            and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not images:
                raise ResnetlabError(f"{p}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
            found += images
        else:
            found.append(p)   # missing or unreadable files are reported when they are read
    if not found:
        raise ResnetlabError("no images given")
    return found


def read_image(path: Path) -> torch.Tensor:
    """An image file decoded (uint8 C x H x W), or one error line naming the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ResnetlabError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return decode_image(data, str(path))
    except ResnetlabError as e:   # PIL names the in-memory buffer, which tells the user nothing
        raise ResnetlabError(re.sub(r" <_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(e))) from None


def _warn(path: str, reason: str) -> None:
    warnings.warn(f"skipping {path}: {reason}", stacklevel=3)


# --------------------------------------------------------------------------------------------------
# Prediction


def inference_model(model: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """The fast fp32 form of a model for inference: BatchNorm folded into the convolutions,
    channels_last weights, no gradients."""
    folded = fold_batchnorm(model).to(device, memory_format=torch.channels_last)
    return folded.requires_grad_(False)


def predict(run: str | Path | TrainedRun, paths: Sequence[str | Path], topk: int = 5,
            device: str = "auto", batch_size: int = 32, on_skip: SkipHandler | None = None) -> list[dict]:
    """Top-k classes of every image in `paths` (files, or folders of images), in order:
    [{"file", "predictions": [{"class", "index", "probability"}, ...]}, ...].

    An unreadable file is passed to `on_skip(file, reason)` (default: a warning) and left out;
    when no file can be read at all, a ResnetlabError.
    """
    from .train.engine import resolve_device

    if topk < 1:
        raise ResnetlabError(f"--topk must be 1 or more, got {topk}")
    if batch_size < 1:
        raise ResnetlabError(f"--batch-size must be 1 or more, got {batch_size}")
    dev = resolve_device(device) if isinstance(device, str) else device
    if not isinstance(run, TrainedRun):
        run = load_run(run, "cpu")
    files = collect_images(paths)
    on_skip = on_skip or _warn
    model = run.inference_model(dev)
    norm = run.input_normalizer()
    k = min(topk, len(run.classes))

    def load(path: Path):
        try:
            return run.prepare(read_image(path), norm)
        except ResnetlabError as e:
            return str(e)

    results, failures = [], []
    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, torch.inference_mode():
        pending = [pool.submit(load, p) for p in chunks[0]]
        for n, chunk in enumerate(chunks):
            decoded = [f.result() for f in pending]
            # decode the next batch while this one goes through the network
            pending = [pool.submit(load, p) for p in chunks[n + 1]] if n + 1 < len(chunks) else []
            good, inputs = [], []
            for path, x in zip(chunk, decoded, strict=True):
                if isinstance(x, str):
                    failures.append((str(path), x))
                    on_skip(str(path), x.removeprefix(f"{path}: "))
                else:
                    good.append(path)
                    inputs.append(x)
            if not inputs:
                continue
            probs = _probabilities(model, torch.stack(inputs), dev)
            values, indices = probs.topk(k, dim=1)
            for path, v, i in zip(good, values.tolist(), indices.tolist(), strict=True):
                preds = [{"class": run.classes[j], "index": j, "probability": p}
                         for p, j in zip(v, i, strict=True)]
                results.append({"file": str(path), "predictions": preds})
    if not results:
        first = failures[0][1] if failures else "nothing to read"
        raise ResnetlabError(f"none of the {len(files)} image(s) could be read ({first})")
    return results


def _probabilities(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax over the classes for a batch N x C x H x W (or N x K x C x H x W: K views of each
    image, ten crops or an image and its mirror, whose probabilities are averaged)."""
    n = x.shape[0]
    if x.ndim == 5:   # image-major N x K -> view-major KN rows, the layout crop_mean averages
        x = x.transpose(0, 1).flatten(0, 1)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    return crop_mean(model(x).float().softmax(1).cpu(), n)


def format_predictions(results: list[dict]) -> str:
    """Human-readable: per image its name and the top-k classes with probabilities."""
    lines = []
    for r in results:
        lines.append(r["file"])
        width = max(len(p["class"]) for p in r["predictions"])
        for rank, p in enumerate(r["predictions"], 1):
            pct = f"{100 * p['probability']:6.2f}%" if math.isfinite(p["probability"]) else "   nan"
            lines.append(f"  {rank}. {p['class']:<{width}}  {pct}  (class {p['index']})")
    return "\n".join(lines)

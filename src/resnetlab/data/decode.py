"""Decoding one image file into a uint8 C x H x W tensor (torchvision.io first, Pillow for what it
cannot read), reading its size from the header alone, and fitting images to a square."""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import torch

from ..errors import ResnetlabError


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


def probe_image(source: bytes | io.BufferedIOBase, name: str = "") -> tuple[int, int, int]:
    """(C, H, W) that `decode_image` gives for these bytes (or this binary file), from the header
    alone: cheap, and catches files that are not images at all (not damage further into a file).

    Mirrors decode_image's rules: torchvision decodes GIF and WEBP as RGB; otherwise grayscale modes
    (1, L, LA, I, F, 16-bit) give one channel, everything else three.
    """
    from PIL import Image

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        head = stream.read(16)
        stream.seek(0)
        fmt = _sniff(head)
        with Image.open(stream) as im:
            mode, (width, height) = im.mode, im.size
    except Exception as e:  # PIL raises many different types for a broken file
        raise ResnetlabError(f"{name or 'image'}: cannot decode ({type(e).__name__}: {e})") from None
    if fmt in ("gif", "webp") and _torchvision_io() is not None:
        channels = 3
    else:
        channels = 1 if mode.startswith("I;16") or mode in _PIL_GRAY_MODES else 3
    return channels, height, width


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and centre-crop a square (single image or batch)."""
    if image.shape[-2:] == (size, size):
        return image
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image, [size], antialias=True)
    return F.center_crop(image, [size, size]).contiguous()



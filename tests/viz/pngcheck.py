"""Checks that a file (or bytes) is a complete, decodable PNG of a sensible size."""

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, after checking the signature and the IHDR chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0], "corrupt IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_png(path, min_side: int = 200, max_side: int = 4000) -> tuple[int, int]:
    """A complete, decodable PNG of a sensible size."""
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    width, height = png_size(data)
    assert data.endswith(b"IEND\xaeB`\x82"), "truncated PNG"
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (width, height)
    assert min_side <= min(width, height) and max(width, height) <= max_side, (width, height)
    return width, height

"""Shared pieces of the figures: where they go, how tensors become pictures, PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..errors import ResnetlabError  # noqa: E402

Output = str | Path | BinaryIO  # a file name, or an open binary file (io.BytesIO for the report)
DPI = 120


def save_figure(fig, out: Output) -> Output:
    """Write `fig` as PNG to a path (folders created) or a binary file object; close it."""
    try:
        if isinstance(out, (str, Path)):
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI, format="png")
    except OSError as e:
        raise ResnetlabError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return out


def png_bytes(plot, *args, **kwargs) -> bytes:
    """The PNG bytes a plot function (one whose output parameter is `out`) draws."""
    buffer = io.BytesIO()
    plot(*args, out=buffer, **kwargs)
    return buffer.getvalue()


def unit_range(t: torch.Tensor, dims: tuple[int, ...] | None = None, constant: float = 0.5) -> torch.Tensor:
    """Min-max scale to [0, 1] over `dims` (all when None); a constant block becomes `constant`."""
    t = t.detach().float().cpu()
    if dims is None:
        lo, hi = t.min(), t.max()
    else:
        lo, hi = t.amin(dim=dims, keepdim=True), t.amax(dim=dims, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (t - lo) / span.clamp_min(1e-12), torch.full_like(t, constant))


def to_image(t: torch.Tensor):
    """C x H x W in [0, 1] (C = 1 or 3) as what imshow takes: H x W (gray) or H x W x 3."""
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


def mosaic(tiles: torch.Tensor, cols: int, pad: int = 1, fill: float | torch.Tensor = 1.0) -> torch.Tensor:
    """N x C x h x w tiles in [0, 1] as one C x H x W picture, `cols` per row, `pad` pixels apart;
    `fill` is the gap colour (a number, or a C x 1 x 1 tensor)."""
    n, c, h, w = tiles.shape
    rows = -(-n // cols)
    out = torch.zeros((c, rows * (h + pad) + pad, cols * (w + pad) + pad))
    out[:] = torch.as_tensor(fill, dtype=out.dtype)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        out[:, y:y + h, x:x + w] = tiles[i]
    return out


def hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)

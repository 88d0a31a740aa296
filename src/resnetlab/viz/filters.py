"""The first convolution's filters as a picture grid (edges and colour blobs,
as Krizhevsky et al. 2012 and Zeiler & Fergus 2014 show)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..errors import ResnetlabError
from ..run import Run, load_trained
from .common import Output, hide_ticks, mosaic, plt, save_figure, to_image, unit_range

_GAP = torch.tensor([0.35, 0.5, 0.75]).view(3, 1, 1)


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first nn.Conv2d in module order and its name (conv1, features.0, conv1.conv, ...)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ResnetlabError(f"{type(model).__name__} has no convolution layer")


def plot_filters(weight: torch.Tensor, out: Output, layer: str = "conv1", title: str = "") -> Output:
    """Draw K x C x kh x kw filters, each min-max normalised on its own: gray for C = 1, RGB for
    C = 3, the channel mean in gray otherwise (said in the title). Returns `out`."""
    if weight.ndim != 4:
        raise ValueError(f"filters must be K x C x kh x kw, got {tuple(weight.shape)}")
    k, c, kh, kw = weight.shape
    shown = weight if c in (1, 3) else weight.mean(1, keepdim=True)
    tiles = unit_range(shown, dims=(1, 2, 3)).expand(-1, 3, -1, -1)
    cols = max(1, math.ceil(math.sqrt(k)))
    rows = -(-k // cols)
    pad = 1 if kh < 7 else 2
    # Blue gaps: neither black nor white, so a filter's edge pixels stay visible against them.
    grid = mosaic(tiles, cols, pad=pad, fill=_GAP)
    side = 0.6 if kh <= 5 else 0.8
    fig, ax = plt.subplots(figsize=(max(4.4, cols * side + 0.6), max(2.4, rows * side + 0.9)))
    ax.imshow(to_image(grid), vmin=0, vmax=1, interpolation="nearest")
    hide_ticks(ax)
    colour = {1: "gray", 3: "RGB"}.get(c, f"mean of {c} channels, gray")
    head = f"{layer}: {k} filters of {c}x{kh}x{kw} ({colour}, each min-max scaled)"
    ax.set_title(f"{title}\n{head}" if title else head, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def show_filters(run_dir: str | Path, out: Output | None = None) -> Output:
    """The first conv layer's filters of a trained run; default output RUN/filters.png."""
    run = Run.open(run_dir).root
    model, record, _ = load_trained(run)
    name, conv = first_conv(model)
    title = f"{record.config.model} ({run.resolve().name})"
    return plot_filters(conv.weight.detach(), out if out is not None else run / "filters.png", name, title)

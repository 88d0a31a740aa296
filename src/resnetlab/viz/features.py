"""Feature maps of a trained network for one image, stage by stage (the hierarchy Zeiler & Fergus
2014 showed: early layers respond to edges, later ones to parts and objects)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ResnetlabError
from ..run import Run
from .common import Output, hide_ticks, plt, save_figure, to_image, unit_range

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (label, module) pairs whose outputs are a network's stages.

    ResNets/plain nets: layer1, layer2, ... (CIFAR nets, which have no max-pool stem, also the stem:
    the output of conv1-bn1-relu). Other nets: every pooling layer among the children of `features`
    (or of the model itself, e.g. GoogLeNet), and the last child before the classifier; which of the
    candidates give 4-D maps is settled when the image runs (see feature_maps)."""
    children = dict(model.named_children())
    layers = [name for name in children if re.fullmatch(r"layer\d+", name)]
    if layers:
        stem = [("stem", children["relu"])] if "maxpool" not in children and "relu" in children else []
        return stem + [(name, children[name]) for name in layers]
    container, prefix = ((children["features"], "features.") if isinstance(children.get("features"),
                                                                            nn.Sequential) else (model, ""))
    candidates = [(prefix + name, m) for name, m in container.named_children()
                  if not isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Dropout,
                                        nn.Flatten)) and "aux" not in name]
    if not candidates:
        raise ResnetlabError(f"{type(model).__name__}: found no stages to show")
    chosen = [(f"{n} ({type(m).__name__})", m) for n, m in candidates if isinstance(m, _POOLS)]
    last_name, last = candidates[-1]
    if not chosen or chosen[-1][1] is not last:
        chosen.append((f"{last_name} ({type(last).__name__})", last))
    return chosen


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor,
                 stages: list[tuple[str, nn.Module]] | None = None) -> tuple[list[tuple[str, torch.Tensor]],
                                                                             torch.Tensor]:
    """Run one normalised 1 x C x H x W input; return [(label, C' x H' x W' map)] for the stages that
    produced 4-D outputs with more than one pixel (first call of each module), and the logits."""
    stages = stage_modules(model) if stages is None else stages
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for i, (_, module) in enumerate(stages):
        def hook(_module, _inputs, output, i=i):
            if i not in captured and isinstance(output, torch.Tensor):
                captured[i] = output.detach().float().cpu().clone()
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not isinstance(logits, torch.Tensor):   # e.g. GoogLeNet's namedtuple in training mode
        logits = logits[0]
    maps = [(label, captured[i][0]) for i, (label, _) in enumerate(stages)
            if i in captured and captured[i].ndim == 4 and captured[i].shape[-1] * captured[i].shape[-2] > 1]
    return maps, logits.float().cpu()


def prepare_image(run, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded image (uint8 C x H x W, any size and mode) as a run's network input, the way
    `resnetlab predict` feeds it (`TrainedRun.prepare`; a ten-crop run: its centre crop; a flip run:
    the image, not its mirror). Returns (the input as shown, C x H x W in [0, 1]; the network input,
    1 x C x H x W)."""
    from ..data.augment import Normalizer

    c = run.channels
    identity = Normalizer(torch.zeros(c, 1, 1), torch.ones(c, 1, 1))
    shown = run.prepare(image, identity, crops=False)
    return shown.clamp(0, 1), run.prepare(image, crops=False)[None]


def plot_features(image: torch.Tensor, maps: list[tuple[str, torch.Tensor]], out: Output, title: str = "",
                  channels: int = 8) -> Output:
    """The input (C x H x W in [0, 1]) on the left; for each stage its first `channels` feature maps,
    each min-max scaled on its own (viridis; bright = strong response). Returns `out`."""
    if not maps:
        raise ResnetlabError("no feature maps to show")
    k = max(1, min(channels, max(m.shape[0] for _, m in maps)))
    rows = len(maps)
    cell = 0.95
    fig = plt.figure(figsize=(3.6 + k * cell, max(3.0, rows * (cell + 0.3) + 0.9)))
    grid = fig.add_gridspec(rows, k + 2, width_ratios=[2.2, 0.9] + [1] * k, wspace=0.08, hspace=0.35)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(to_image(image), cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    hide_ticks(ax)
    ax.set_title(f"input {image.shape[1]}x{image.shape[2]}", fontsize=9)
    for r, (label, fmap) in enumerate(maps):
        # A constant channel (e.g. all zero after ReLU: no response) stays dark, not mid-scale.
        scaled = unit_range(fmap[:k], dims=(1, 2), constant=0.0)
        c, h, w = fmap.shape
        ax = fig.add_subplot(grid[r, 1])
        ax.axis("off")
        ax.text(0.95, 0.5, f"{label.replace(' (', chr(10) + '(')}\n{c}x{h}x{w}", ha="right", va="center",
                fontsize=8, transform=ax.transAxes)
        for j in range(k):
            ax = fig.add_subplot(grid[r, j + 2])
            hide_ticks(ax)
            if j < scaled.shape[0]:
                ax.imshow(scaled[j].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.set_visible(False)
            if r == 0:
                ax.set_title(f"ch {j}", fontsize=8)
    fig.suptitle(title or "feature maps", fontsize=10)
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.75 / fig.get_figheight(), bottom=0.03)
    return save_figure(fig, out)


def show_features(run_dir: str | Path, image: str | Path, out: Output | None = None, channels: int = 8,
                  device: str = "cpu") -> Output:
    """Feature maps of a trained run for one image file, with the prediction in the title; default
    output RUN/features-IMAGE.png."""
    from ..predict import load_run, read_image

    run = Run.open(run_dir).root
    image = Path(image)
    if not image.is_file():
        raise ResnetlabError(f"{image}: no such image file")
    if channels < 1:
        raise ResnetlabError(f"--channels must be 1 or more, got {channels}")
    trained = load_run(run, device)
    shown, x = prepare_image(trained, read_image(image))
    maps, logits = feature_maps(trained.model, x.to(device))
    probs = logits.softmax(1)[0]
    top = int(probs.argmax())
    classes = trained.classes or [str(i) for i in range(len(probs))]
    title = (f"{trained.model_name} ({run.resolve().name}) on {image.name}: "
             f"predicted {classes[top]!r} (p = {probs[top]:.2f})\n"
             f"first {min(channels, max(m.shape[0] for _, m in maps))} channels of each stage, "
             "each scaled to its own range")
    return plot_features(shown, maps, run / f"features-{image.stem}.png" if out is None else out, title,
                         channels)

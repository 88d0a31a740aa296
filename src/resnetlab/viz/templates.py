"""A linear classifier f = Wx + b on flattened pixels, and its rows of W drawn as class templates.

A linear classifier learns one template per class; each row of W reshaped to
the image shape is a picture (a blurry car, a two-headed horse, a ship on blue). Softmax regression,
trained with minibatch Adam on the in-memory uint8 images (converted batch by batch, so CIFAR-size
sets need no float copy), pixels scaled to [0, 1] with the per-pixel training mean subtracted, and an
L2 penalty on W that keeps the templates smooth enough to read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ResnetlabError
from .common import Output, hide_ticks, plt, save_figure, to_image, unit_range


@dataclass
class LinearClassifier:
    """weight: K x C x H x W (a template per class), bias: K, mean: C x H x W (subtracted from x/255)."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    classes: list[str]
    train_accuracy: float
    test_accuracy: float | None

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> N x K scores, in chunks."""
        w = self.weight.flatten(1)
        return torch.cat([(chunk.flatten(1).float() / 255 - self.mean.flatten()) @ w.T + self.bias
                          for chunk in images.split(4096)])

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return (self.logits(images).argmax(1) == labels).double().mean().item()


def pixel_mean(images: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for chunk in images.split(4096):
        total += chunk.double().sum(0)
    return (total / (255 * max(1, images.shape[0]))).float()


def train_linear(images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                 test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None, *,
                 epochs: int = 5, batch_size: int = 512, lr: float = 0.01, weight_decay: float = 1e-2,
                 seed: int = 0, min_steps: int = 300) -> LinearClassifier:
    """Softmax regression on uint8 N x C x H x W images: minibatch Adam, lr decayed linearly to 0,
    loss = cross-entropy + weight_decay / 2 * |W|^2. Seconds on a CPU for Fashion-MNIST/CIFAR-10.

    Runs `epochs` passes, and more on a small set until it has taken `min_steps` steps (a few
    hundred images at 5 epochs would otherwise stop after a handful of steps, far from trained)."""
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
    if epochs < 1:
        raise ResnetlabError(f"--epochs must be 1 or more, got {epochs}")
    n, k = images.shape[0], len(classes)
    if n == 0:
        raise ResnetlabError("the training set is empty")
    batch_size = min(batch_size, n)
    mean = pixel_mean(images)
    flat_mean = mean.flatten()
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(k, mean.numel(), requires_grad=True)
    b = torch.zeros(k, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    steps_per_epoch = n // batch_size
    total = max(epochs * steps_per_epoch, min_steps)
    # One thread: the model is too small to gain from more, and where the cores are busy (a training
    # run beside it) threads waiting on each other made it several times slower (2.5 s vs 17 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(total):
            i = step % steps_per_epoch
            if i == 0:
                order = torch.randperm(n, generator=gen)
            for group in opt.param_groups:
                group["lr"] = lr * (1 - step / total)
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = images[idx].flatten(1).float() / 255 - flat_mean
            loss = F.cross_entropy(x @ w.T + b, labels[idx]) + weight_decay / 2 * (w * w).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    clf = LinearClassifier(w.detach().view(k, *mean.shape), b.detach(), mean, list(classes), 0.0, None)
    clf.train_accuracy = clf.accuracy(images, labels)
    if test_images is not None and test_labels is not None and len(test_labels):
        clf.test_accuracy = clf.accuracy(test_images, test_labels)
    return clf


def plot_templates(weight: torch.Tensor, classes: list[str], out: Output, title: str = "") -> Output:
    """One picture per class from K x C x H x W weights (C = 1: gray, C = 3: RGB, else the channel
    mean), each template min-max scaled on its own; the class name above it. Returns `out`."""
    if weight.ndim != 4 or weight.shape[0] != len(classes):
        raise ValueError(f"weight must be K x C x H x W with K = {len(classes)}, got {tuple(weight.shape)}")
    k, c = weight.shape[:2]
    shown = weight if c in (1, 3) else weight.mean(1, keepdim=True)
    tiles = unit_range(shown, dims=(1, 2, 3))
    cols = 5 if k <= 10 else 10 if k <= 100 else math.ceil(math.sqrt(k))
    rows = -(-k // cols)
    small = k > 20
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (1.25 if small else 1.9),
                                                  rows * (1.35 if small else 2.1) + 0.7), squeeze=False)
    for i, ax in enumerate(axes.flat):
        hide_ticks(ax)
        if i >= k:
            ax.set_visible(False)
            continue
        ax.imshow(to_image(tiles[i]), cmap="gray" if tiles.shape[1] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(classes[i], fontsize=6 if small else 10)
    fig.suptitle(title or "linear classifier templates", fontsize=10 if small else 11)
    fig.tight_layout()
    return save_figure(fig, out)


def fit_templates(data: str = "fashion-mnist", data_dir: str | None = None, epochs: int = 5,
                  image_size: int | None = None, seed: int = 0,
                  weight_decay: float = 1e-2) -> LinearClassifier:
    """Load an in-memory data set and train the linear classifier on it (see train_linear)."""
    from ..data.open import open_data
    from ..data.stream import StreamSplits

    splits = open_data(data, data_dir=data_dir, image_size=image_size)
    if isinstance(splits, StreamSplits):
        raise ResnetlabError(f"{data} is too large to hold in memory; templates need an in-memory data set "
                             "(use --image-size to store it smaller)")
    return train_linear(splits.train.images, splits.train.labels, splits.classes, splits.test.images,
                        splits.test.labels, epochs=epochs, seed=seed, weight_decay=weight_decay)


def templates_title(clf: LinearClassifier, data: str) -> str:
    c, h, w = clf.weight.shape[1:]
    acc = (f"test accuracy {100 * clf.test_accuracy:.1f}%" if clf.test_accuracy is not None
           else f"training accuracy {100 * clf.train_accuracy:.1f}%")
    return (f"Linear classifier f = Wx + b on {data_name(data)} ({c}x{h}x{w} pixels): {acc}\n"
            "each row of W reshaped to the image: one template per class")


def show_templates(data: str = "fashion-mnist", data_dir: str | None = None, epochs: int = 5,
                   out: Output | None = None, image_size: int | None = None, seed: int = 0,
                   weight_decay: float = 1e-2) -> Output:
    """Train the linear classifier on an in-memory data set and draw its templates, with its test
    accuracy in the title; default output templates-DATA.png in the current folder."""
    clf = fit_templates(data, data_dir, epochs, image_size, seed, weight_decay)
    return plot_templates(clf.weight, clf.classes, default_templates_path(data) if out is None else out,
                          templates_title(clf, data))


def default_templates_path(data: str) -> Path:
    return Path(f"templates-{data_name(data)}.png")


def data_name(spec: str) -> str:
    """fashion-mnist -> fashion-mnist; ../data/cifar10-jpeg.tar.gz -> cifar10-jpeg."""
    return Path(str(spec)).name.split(".")[0] or "data"

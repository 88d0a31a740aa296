"""The confusion matrix of a trained run, with class names and counts."""

from __future__ import annotations

from pathlib import Path

import torch

from ..run import Run
from .common import Output, plt, save_figure


def plot_confusion(matrix, classes: list[str], out: Output, title: str = "") -> Output:
    """K x K counts (row = true class, column = predicted), coloured by the share of each true class,
    the count written in every cell (up to 30 classes). Returns `out`."""
    m = torch.as_tensor(matrix, dtype=torch.int64)
    k = m.shape[0]
    if m.shape != (k, k) or len(classes) != k:
        raise ValueError(f"matrix must be K x K with K = {len(classes)}, got {tuple(m.shape)}")
    share = m.double() / m.sum(1, keepdim=True).clamp_min(1)
    side = min(14.0, max(5.5, 0.5 * k + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    small = k > 12
    font = 6 if k > 20 else 7 if small else 9
    if k <= 30:
        for i in range(k):
            for j in range(k):
                count = int(m[i, j])
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                            color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=45, ha="right", rotation_mode="anchor", fontsize=font + 1)
    ax.set_yticklabels(classes, fontsize=font + 1)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct, total = int(m.diag().sum()), int(m.sum())
    accuracy = f"accuracy {100 * correct / total:.2f}% of {total} images" if total else "no images"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of the true class", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def show_confusion(run_dir: str | Path, out: Output | None = None, data: str | None = None,
                   data_dir: str | None = None, split: str = "test", device: str = "auto") -> Output:
    """Evaluate a run (`evaluate_run`: fp32, its own preprocessing) and draw its confusion matrix;
    default output RUN/confusion.png."""
    from ..train.evaluate import evaluate_run

    run = Run.open(run_dir).root
    r = evaluate_run(run, data=data, data_dir=data_dir, device=device, split=split)
    title = f"{r['model']} ({run.resolve().name}) on {Path(str(r['data'])).name}, {split} split"
    return plot_confusion(r["confusion_matrix"], r["classes"], run / "confusion.png" if out is None else out,
                          title)

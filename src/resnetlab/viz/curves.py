"""Learning-curve and response figures in the paper's style (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def plot_degradation(curves: dict, depths: list[int], path: Path, title: str = "") -> Path:
    """Fig. 6 style: training error dashed, test error solid, against iterations; plain nets left,
    ResNets right, one colour per depth, shared y axis."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    top = 0.0
    for ax, kind, label in zip(axes, ("plain", "resnet"), ("plain", "ResNet"), strict=True):
        for i, d in enumerate(depths):
            c = curves[f"{kind}{d}"]
            color = _COLORS[i % len(_COLORS)]
            ax.plot(c.steps, [100 * e for e in c.train_error], "--", color=color, lw=1.2)
            ax.plot(c.eval_steps, [100 * e for e in c.test_error], "-", color=color, lw=2,
                    label=f"{label}-{d}")
            # Scale the y axis to the later part of training, not the first random-guess steps.
            later = c.test_error[len(c.test_error) // 4:] + c.train_error[len(c.train_error) // 4:]
            top = max(top, 100 * max(later))
        ax.set_xlabel("iterations")
        ax.set_title("plain nets" if kind == "plain" else "ResNets")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100, top * 1.3))
    fig.suptitle(f"Degradation: training error (dashed), test error (solid). {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_responses(stds: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Fig. 7 style: std of each 3x3 layer's response, by layer index (top) and sorted (bottom)."""
    fig, axes = plt.subplots(2, 1, figsize=(8, 7))
    for i, (name, values) in enumerate(stds.items()):
        style = "-" if name.startswith("resnet") else "--"
        color = _COLORS[i % len(_COLORS)]
        label = name.replace("resnet", "ResNet-").replace("plain", "plain-")
        axes[0].plot(range(1, len(values) + 1), values, style, color=color, label=label, lw=1.5)
        axes[1].plot(range(1, len(values) + 1), sorted(values, reverse=True), style, color=color, label=label,
                     lw=1.5)
    axes[0].set_xlabel("layer index (original order)")
    axes[1].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes:
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Std of 3x3 layer responses (after BN, before addition/ReLU). {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

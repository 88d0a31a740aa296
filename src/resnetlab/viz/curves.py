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


def plot_run_curves(runs: dict[str, list[dict]], out, x: str = "iterations", title: str = ""):
    """Training error (dashed) and test error (solid) of several runs on one plot, one colour per run;
    `runs` maps a legend name to its metrics.jsonl records; x = "iterations" (step) or "epochs".
    `out` is a path or a binary file object; returns it."""
    from .common import save_figure

    if x not in ("iterations", "epochs"):
        raise ValueError(f"x must be iterations or epochs, got {x!r}")
    key = "step" if x == "iterations" else "epoch"
    fig, ax = plt.subplots(figsize=(8, 4.6))
    later = []
    for i, (name, records) in enumerate(runs.items()):
        color = _COLORS[i % len(_COLORS)]
        trains = [r for r in records if r.get("kind") == "train" and "train_error" in r]
        evals = [r for r in records if r.get("kind") == "eval" and "test_top1_error" in r]
        if trains:
            ax.plot([r[key] for r in trains], [100 * r["train_error"] for r in trains], "--", color=color,
                    lw=1.2, alpha=0.85)
            later += [r["train_error"] for r in trains[len(trains) // 4:]]
        if evals:
            ax.plot([r[key] for r in evals], [100 * r["test_top1_error"] for r in evals], "-", color=color,
                    lw=2, marker="o" if len(evals) <= 30 else None, ms=3)
            later += [r["test_top1_error"] for r in evals]
        ax.plot([], [], "-", color=color, lw=2, label=name)
    ax.plot([], [], "--", color="gray", lw=1.2, label="training error")
    ax.plot([], [], "-", color="gray", lw=2, label="test error")
    ax.set_xlabel(x)
    ax.set_ylabel("top-1 error (%)")
    if later:   # every test point, and the training error after the first random-guess steps
        ax.set_ylim(0, min(100, 100 * max(later) * 1.1 + 0.5))
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(title or "training error (dashed), test error (solid)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def show_curves(run_dirs: list, out=None, x: str = "iterations"):
    """Learning curves of one or several run folders (read from their metrics.jsonl); default output
    FIRST_RUN/curves.png. The legend names each run by its folder name."""
    from ..errors import ResnetlabError
    from ..train.metrics import read_metrics
    from .common import run_folder

    if not run_dirs:
        raise ResnetlabError("give at least one run folder")
    runs, names = {}, []
    for run_dir in run_dirs:
        run = run_folder(run_dir)
        records = read_metrics(run / "metrics.jsonl")
        if not records:
            raise ResnetlabError(f"{run_dir} has no metrics yet (no records in metrics.jsonl)")
        name = run.resolve().name
        if name in runs:   # two runs whose folders share a name: tell them apart by their parents
            name = str(Path(run_dir))
        runs[name] = records
        names.append(name)
    title = "training error (dashed), test error (solid)"
    if len(runs) == 1:
        from ..train.evaluate import load_run_config

        cfg = load_run_config(run_dirs[0])["config"]
        title = f"{cfg['model']} on {Path(str(cfg['data'])).name}: {title}"
    return plot_run_curves(runs, Path(run_dirs[0]) / "curves.png" if out is None else out, x, title)

"""Learning-curve and response figures in the paper's style (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def seed_band(xs: list[list[int]], ys: list[list[float]]) -> tuple[list[int], list[float], list[float],
                                                                   list[float]]:
    """(x, mean, min, max) over seeds at the x values every seed logged (runs of one recipe log at
    the same steps; a run cut short contributes only its common part)."""
    common = sorted(set.intersection(*(set(x) for x in xs)))
    rows = [[dict(zip(x, y, strict=True))[s] for s in common] for x, y in zip(xs, ys, strict=True)]
    cols = list(zip(*rows, strict=True)) if common else []
    return common, [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]


def _band(ax, xs, ys, style: str, color: str, lw: float, alpha: float = 0.15, **kw) -> list[float]:
    """The mean over seeds as a line, their min-max as a band (as error bars where there are only
    a few points, e.g. a short run's one evaluation)."""
    x, mean, lo, hi = seed_band(xs, ys)
    ax.plot(x, [100 * v for v in mean], style, color=color, lw=lw, **kw)
    if alpha and len(xs) > 1:
        if len(x) > 3:
            ax.fill_between(x, [100 * v for v in lo], [100 * v for v in hi], color=color, alpha=alpha, lw=0)
        else:
            below = [100 * (m - a) for m, a in zip(mean, lo, strict=True)]
            above = [100 * (b - m) for m, b in zip(mean, hi, strict=True)]
            ax.errorbar(x, [100 * v for v in mean], yerr=[below, above], fmt="none", ecolor=color, capsize=4,
                        lw=1.2)
    return hi


def _error_panel(ax, seeds: dict[str, list], title: str) -> tuple[float, int]:
    """One panel of Fig. 6: for each label -> runs (experiments.common.RunCurves over seeds), the
    training error dashed, the test error solid, the un-augmented sample's error (x) where measured;
    mean over seeds as a line, min-max as a band. Returns (the y value worth showing, seeds)."""
    top, n = 0.0, 1
    for i, (name, runs) in enumerate(seeds.items()):
        n = len(runs)
        color = _COLORS[i % len(_COLORS)]
        sampled = all(r.sample_error for r in runs)
        # The running error's band is faint where the verdicts use the sample's.
        train_hi = _band(ax, [r.steps for r in runs], [r.train_error for r in runs], "--", color, 1.0,
                         alpha=0.07 if sampled else 0.15)
        few = len(runs[0].eval_steps) <= 12   # a short run evaluates a few times: mark them
        test_hi = _band(ax, [r.eval_steps for r in runs], [r.test_error for r in runs], "-", color, 2,
                        label=name, marker="o" if few else None, ms=4)
        if sampled:
            _band(ax, [r.eval_steps for r in runs], [r.sample_error for r in runs], "x:", color, 1, ms=6)
        # Scale the y axis to the later part of training, not the first random-guess steps.
        later = test_hi[len(test_hi) // 4:] + train_hi[len(train_hi) // 4:]
        top = max(top, 100 * max(later, default=0))
    ax.set_xlabel("iterations")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return top, n


def _finish(fig, axes, top: float, n: int, title: str, path: Path) -> Path:
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100, top * 1.3))
    spread = f"mean of {n} seeds, band min-max" if n > 1 else "one seed"
    fig.suptitle(f"Training error: dashed (augmented batches), x (un-augmented sample); test error: solid.\n"
                 f"{spread}. {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_degradation(curves: dict, depths: list[int], path: Path, title: str = "") -> Path:
    """Fig. 6 style: plain nets left, ResNets right, one colour per depth, shared y axis. `curves`
    maps plain20 / resnet56 / ... to experiments.common.Seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    panels = [_error_panel(ax, {f"{name}-{d}": curves[f"{kind}{d}"].runs for d in depths}, heading)
              for ax, kind, name, heading in zip(axes, ("plain", "resnet"), ("plain", "ResNet"),
                                                 ("plain nets", "ResNets"), strict=True)]
    return _finish(fig, axes, max(t for t, _ in panels), panels[-1][1], title, path)


def plot_depth(curves: dict, depths: list[int], path: Path, title: str = "") -> Path:
    """Fig. 6 (right) alone: the ResNets of each depth (`curves` maps resnet20 / ... to Seeds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    top, n = _error_panel(ax, {f"ResNet-{d}": curves[d].runs for d in depths}, "ResNets")
    return _finish(fig, [ax], top, n, title, path)


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
    from ..run import Run
    from ..train.metrics import read_metrics

    if not run_dirs:
        raise ResnetlabError("give at least one run folder")
    runs, names = {}, []
    for run_dir in run_dirs:
        run = Run.open(run_dir)
        records = read_metrics(run.metrics_file)
        if not records:
            raise ResnetlabError(f"{run_dir} has no metrics yet (no records in metrics.jsonl)")
        name = run.root.resolve().name
        if name in runs:   # two runs whose folders share a name: tell them apart by their parents
            name = str(Path(run_dir))
        runs[name] = records
        names.append(name)
    title = "training error (dashed), test error (solid)"
    if len(runs) == 1:
        cfg = Run(run_dirs[0]).record().config
        title = f"{cfg.model} on {Path(str(cfg.data)).name}: {title}"
    return plot_run_curves(runs, Path(run_dirs[0]) / "curves.png" if out is None else out, x, title)

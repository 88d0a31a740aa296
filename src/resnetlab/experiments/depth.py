"""Paper Table 6 analogue: ResNet test error against depth (20, 32, 44, 56, 110), over seeds."""

from __future__ import annotations

import time

from ..viz.curves import plot_depth
from .common import (
    ExperimentSpec,
    is_cifar10,
    label,
    load_data,
    seeds_note,
    train_seeds,
    versus,
    write_results,
)
from .degradation import PAPER_RESNET_ERROR


def run(spec: ExperimentSpec, depths: list[int] | None = None) -> dict:
    started = time.time()
    depths = sorted(depths or [20, 32, 44, 56, 110])
    data = load_data(spec)
    curves = {d: train_seeds(spec, f"resnet{d}", data=data) for d in depths}
    other = not is_cifar10(data)
    fig = "depth.png"
    plot_depth(curves, depths, spec.out / fig, title=f"{spec.data_label}, budget {spec.budget}")
    head = (f"| model | params | train error | test error ({spec.data_label}) | best test error | "
            "paper CIFAR-10 error |")
    rows = [head, "|---|---|---|---|---|---|"]
    models = {}
    for d, c in curves.items():
        paper = PAPER_RESNET_ERROR.get(d)
        rows.append(f"| ResNet-{d} | {c.params:,} | {c.summary('final_train_error').pct()} | "
                    f"{c.summary('final_test_error').pct()} | {c.summary('best_test_error').pct()} | "
                    f"{f'{paper:.2f}%' if paper else '–'} |")
        models[f"resnet{d}"] = c.to_dict(depth=d)
    table = "\n".join(rows) + "\n\n" + seeds_note(spec, curves[depths[0]].runs[0].train_error_kind)
    if other:
        table += ("\n\nThe last column is the paper's CIFAR-10 result (Table 6): a different data set "
                  "and a far longer schedule (64k iterations); compare directions, not digits.")
    v, steps = [], {}
    # Each step in depth, then the shallowest against the deepest: resolved or not, each on its own.
    pairs = list(zip(depths, depths[1:], strict=False))
    if len(depths) > 2:
        pairs.append((depths[0], depths[-1]))
    for a, b in pairs:
        for attr, what in (("final_test_error", "test error"), ("final_train_error", "training error")):
            text, diff = versus(curves[b], curves[a], attr, what)
            v.append(f"{label(f'resnet{b}')} vs {label(f'resnet{a}')}, {what}: {text}")
            steps.setdefault(f"resnet{b}-resnet{a}", {})[what] = diff.to_dict()
    return write_results(spec, "depth", {"depths": depths, "models": models, "differences": steps,
                                         "paper_resnet_cifar10_error": PAPER_RESNET_ERROR},
                         table, v, [fig], started)

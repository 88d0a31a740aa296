"""Paper Table 6 analogue: ResNet test error against depth (20, 32, 44, 56, 110)."""

from __future__ import annotations

import time

from .common import ExperimentSpec, is_cifar10, load_data, pct, read_curves, train_or_reuse, write_results
from .degradation import PAPER_RESNET_ERROR


def run(spec: ExperimentSpec, depths: list[int] | None = None) -> dict:
    started = time.time()
    depths = sorted(depths or [20, 32, 44, 56, 110])
    data = load_data(spec)
    curves = {d: read_curves(train_or_reuse(spec, f"resnet{d}", data=data)) for d in depths}
    other = not is_cifar10(data)
    head = f"| model | params | test error ({spec.data_label}) | best test error | paper CIFAR-10 error |"
    rows = [head, "|---|---|---|---|---|"]
    models = {}
    for d, c in curves.items():
        paper = PAPER_RESNET_ERROR.get(d)
        rows.append(f"| ResNet-{d} | {c.params:,} | {pct(c.final_test_error)} | {pct(min(c.test_error))} | "
                    f"{f'{paper:.2f}%' if paper else '–'} |")
        models[f"resnet{d}"] = {"depth": d, "params": c.params, "final_test_error": c.final_test_error,
                                "best_test_error": min(c.test_error),
                                "final_train_error": c.final_train_error, "run_dir": str(c.run_dir)}
    table = "\n".join(rows)
    if other:
        table += ("\n\nThe last column is the paper's CIFAR-10 result (Table 6): a different data set "
                  "and a far longer schedule (64k iterations); compare directions, not digits.")
    errs = [curves[d].final_test_error for d in depths]
    best = depths[errs.index(min(errs))]
    monotone = all(a >= b for a, b in zip(errs, errs[1:], strict=False))
    v = [f"lowest test error: ResNet-{best} ({pct(min(errs))})",
         ("test error falls with every step in depth" if monotone else
          "test error does not fall at every step in depth: " +
          ", ".join(f"{d}: {pct(e)}" for d, e in zip(depths, errs, strict=True)))]
    return write_results(spec, "depth", {"depths": depths, "models": models,
                                         "paper_resnet_cifar10_error": PAPER_RESNET_ERROR},
                         table, v, [], started)

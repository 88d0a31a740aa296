"""Paper Table 3 analogue: shortcut options A (zero-pad), B (projection where dimensions grow)
and C (projection everywhere) on one depth, against the plain net."""

from __future__ import annotations

import time

from .common import ExperimentSpec, load_data, pct, read_curves, train_or_reuse, write_results

# Paper Table 3, ImageNet top-1 error (10-crop), ResNet-34 and plain-34.
PAPER_TOP1 = {"plain": 28.54, "A": 25.03, "B": 24.52, "C": 24.19}


def run(spec: ExperimentSpec, depth: int = 20) -> dict:
    started = time.time()
    data = load_data(spec)
    curves = {"plain": read_curves(train_or_reuse(spec, f"plain{depth}", data=data))}
    for opt in ("A", "B", "C"):
        # Option A is the CIFAR default: the same run as the degradation experiment's resnet.
        options = {} if opt == "A" else {"shortcut": opt}
        curves[opt] = read_curves(train_or_reuse(spec, f"resnet{depth}", options, data=data))
    rows = [f"| net ({depth} layers) | params | train error | test error | "
            "paper ImageNet top-1 (34 layers) |", "|---|---|---|---|---|"]
    models = {}
    for key, c in curves.items():
        label = "plain" if key == "plain" else f"ResNet, option {key}"
        rows.append(f"| {label} | {c.params:,} | {pct(c.final_train_error)} | {pct(c.final_test_error)} | "
                    f"{PAPER_TOP1[key]:.2f}% |")
        models[key] = {"params": c.params, "final_test_error": c.final_test_error,
                       "final_train_error": c.final_train_error, "run_dir": str(c.run_dir)}
    order = sorted(("A", "B", "C"), key=lambda k: curves[k].final_test_error)
    v = [f"test error ranks {' < '.join(order)} "
         f"({', '.join(f'{k}: {pct(curves[k].final_test_error)}' for k in ('A', 'B', 'C'))}); "
         "the paper finds C < B < A, with small gaps",
         _versus_plain(curves),
         f"parameters: A adds {curves['A'].params - curves['plain'].params:,}, "
         f"B adds {curves['B'].params - curves['plain'].params:,}, "
         f"C adds {curves['C'].params - curves['plain'].params:,} over the plain net"]
    return write_results(spec, "shortcuts", {"depth": depth, "models": models,
                                             "paper_imagenet_top1": PAPER_TOP1}, "\n".join(rows), v, [],
                         started)


def _versus_plain(curves: dict) -> str:
    plain = curves["plain"].final_test_error
    worse = [k for k in "ABC" if curves[k].final_test_error >= plain]
    if not worse:
        return f"every shortcut option beats the plain net's test error ({pct(plain)})"
    return f"option {', '.join(worse)} does not beat the plain net's test error ({pct(plain)})"

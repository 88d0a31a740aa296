"""Paper Table 3 analogue: shortcut options A (zero-pad), B (projection where dimensions grow)
and C (projection everywhere) on one depth, against the plain net, over seeds."""

from __future__ import annotations

import time

from ..models.blocks import SHORTCUTS
from .common import ExperimentSpec, Seeds, load_data, seeds_note, train_seeds, versus, write_results

# Paper Table 3, ImageNet top-1 error (10-crop), ResNet-34 and plain-34.
PAPER_TOP1 = {"plain": 28.54, "A": 25.03, "B": 24.52, "C": 24.19}


def run(spec: ExperimentSpec, depth: int = 20) -> dict:
    started = time.time()
    data = load_data(spec)
    curves = {"plain": train_seeds(spec, f"plain{depth}", data=data)}
    for opt in SHORTCUTS:
        # Option A is the CIFAR default: the same runs as the degradation experiment's resnets.
        options = {} if opt == "A" else {"shortcut": opt}
        curves[opt] = train_seeds(spec, f"resnet{depth}", options, data=data)
    rows = [f"| net ({depth} layers) | params | train error | test error | "
            "paper ImageNet top-1 (34 layers) |", "|---|---|---|---|---|"]
    models = {}
    for key, c in curves.items():
        name = "plain" if key == "plain" else f"ResNet, option {key}"
        rows.append(f"| {name} | {c.params:,} | {c.summary('final_train_error').pct()} | "
                    f"{c.summary('final_test_error').pct()} | {PAPER_TOP1[key]:.2f}% |")
        models[key] = c.to_dict()
    table = "\n".join(rows) + "\n\n" + seeds_note(spec, curves["A"].runs[0].train_error_kind)
    named = {k: Seeds(k if k == "plain" else f"option {k}", c.runs) for k, c in curves.items()}
    v, differences = [], {}
    # The paper's ordering is C < B < A, with small gaps: each neighbouring pair, then each vs plain.
    for a, b in (("B", "A"), ("C", "B"), ("C", "A"), ("A", "plain"), ("B", "plain"), ("C", "plain")):
        text, d = versus(named[a], named[b], "final_test_error", "test error")
        v.append(text)
        differences[f"{a}-{b}"] = d.to_dict()
    v.append(f"parameters: A adds {curves['A'].params - curves['plain'].params:,}, "
             f"B adds {curves['B'].params - curves['plain'].params:,}, "
             f"C adds {curves['C'].params - curves['plain'].params:,} over the plain net; "
             "the paper finds C < B < A on ImageNet, with small gaps")
    return write_results(spec, "shortcuts", {"depth": depth, "models": models, "differences": differences,
                                             "paper_imagenet_top1": PAPER_TOP1}, table, v, [], started)

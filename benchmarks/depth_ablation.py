"""Why does our ResNet-56 train slower per step than ResNet-20? A controlled ablation.

ResNet-20 vs ResNet-56 on Fashion-MNIST at one fixed budget (default 2 epochs), several seeds per
cell; each cell changes one thing against the paper's CIFAR recipe (step schedule, lr 0.1 from step
0). Training error is measured on a fixed sample of 10,000 un-augmented training images at the end
(and the running error on augmented batches beside it). Every run is an ordinary run folder under
OUT/CELL-MODEL/seed-S, reused when finished and resumed when not, so a stopped ablation continues
where it stopped.

    python benchmarks/depth_ablation.py --out results/ablation            # all cells, 3 seeds
    python benchmarks/depth_ablation.py --cells paper warmup --seeds 3     # some of them

Prints (and writes OUT/ablation.md, OUT/ablation.json) one row per cell: both nets' errors as
mean ± std over seeds and the paired 95% t interval for ResNet-56 minus ResNet-20.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from resnetlab.experiments.common import ExperimentSpec, load_data, seed_dir, train_seeds
from resnetlab.stats import compare
from resnetlab.train.checkpoint import write_json

# cell -> (recipe overrides, model options, what it tests). The engine is fixed (no probe) so that
# only the named factor differs between cells.
CELLS = {
    "paper": ({}, {}, "the paper's recipe: step schedule, lr 0.1 from step 0, lr/10 at 50% and 75%"),
    "warmup": ({"warmup": 0.1}, {}, "a linear warm-up over the first 10% of the run, then the paper's steps"),
    "zero-init": ({}, {"zero_init_residual": True}, "each block's last BN starts at 0 (block = identity)"),
    "onecycle": ({"schedule": "onecycle", "warmup": 0.15}, {},
                 "one-cycle: linear up to 0.1 over 15%, linear down to 0"),
    "fp32": ({"precision": "fp32"}, {}, "the paper's recipe in fp32 instead of bf16 autocast"),
    "warmup-zero-init": ({"warmup": 0.1}, {"zero_init_residual": True}, "warm-up and zero-init together"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--out", default="results/depth-ablation")
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--depths", type=int, nargs=2, default=[20, 56])
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--precision", default="bf16", help="engine for every cell but fp32 (default bf16)")
    ap.add_argument("--channels-last", default="on")
    ap.add_argument("--jobs", type=int, default=2, help="seeds trained at the same time (default 2: on a "
                    "2-core CPU two 1-thread runs do ~20%% more steps per second than one 2-thread run)")
    ap.add_argument("--report-only", action="store_true", help="table from the finished cells; train nothing")
    args = ap.parse_args()

    out = Path(args.out)
    spec = ExperimentSpec(data=args.data, out=out, budget="full", recipe="paper-cifar", epochs=args.epochs,
                          seeds=tuple(range(args.seeds)), jobs=args.jobs,
                          engine={"precision": args.precision, "channels_last": args.channels_last,
                                  "compile": "off"})
    data = None if args.report_only else load_data(spec)
    shallow, deep = (f"resnet{d}" for d in args.depths)
    rows, results = [], {}
    for cell in args.cells:
        overrides, options, what = CELLS[cell]
        engine = {**spec.engine, **{k: v for k, v in overrides.items() if k in spec.engine}}
        recipe = dataclasses.replace(spec, engine=engine).recipe_for(
            **{k: v for k, v in overrides.items() if k not in spec.engine})
        nets = {}
        for model in (shallow, deep):
            name = f"{cell}-{model}"
            if args.report_only and not all((seed_dir(spec, name, s) / "summary.json").exists()
                                            for s in spec.seeds):
                break
            nets[model] = train_seeds(spec, model, options, data=data, name=name, recipe=recipe)
        if len(nets) < 2:
            continue
        a, b = nets[deep], nets[shallow]
        verdict, diff = compare(f"ResNet-{args.depths[1]}", a.values("final_train_error"),
                                f"ResNet-{args.depths[0]}", b.values("final_train_error"), "training error")
        _, tdiff = compare(f"ResNet-{args.depths[1]}", a.values("final_test_error"),
                           f"ResNet-{args.depths[0]}", b.values("final_test_error"), "test error")
        results[cell] = {"what": what, "recipe_overrides": overrides, "model_options": options,
                         shallow: b.to_dict(), deep: a.to_dict(), "train_difference": diff.to_dict(),
                         "test_difference": tdiff.to_dict(), "verdict": verdict}
        rows.append(f"| {cell} | {b.summary('final_train_error').pct()} "
                    f"| {a.summary('final_train_error').pct()} "
                    f"| {100 * diff.diff:+.2f} [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}] "
                    f"| {b.summary('final_test_error').pct()} | {a.summary('final_test_error').pct()} "
                    f"| {100 * tdiff.diff:+.2f} [{100 * tdiff.low:+.2f}, {100 * tdiff.high:+.2f}] |")
        print(f"{cell}: {verdict}", flush=True)
    d1, d2 = args.depths
    table = [f"| cell | R{d1} train err | R{d2} train err | R{d2} − R{d1} [95% CI] | R{d1} test err | "
             f"R{d2} test err | R{d2} − R{d1} [95% CI] |", "|---|---|---|---|---|---|---|", *rows]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    md = [f"# Depth ablation: ResNet-{d1} vs ResNet-{d2}, {args.data}, {args.epochs:g} epochs, "
          f"{args.seeds} seeds", "", f"Command: `{' '.join(sys.argv)}`  ", f"Machine: {machine}", "",
          "Training error: fixed sample of 10,000 un-augmented training images, at the end. "
          "Differences: paired t over seeds (same seed = same data order and augmentation).", "",
          *table, ""]
    md += [f"- **{c}** ({r['what']}): {r['verdict']}" for c, r in results.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text("\n".join(md) + "\n")
    write_json(out / "ablation.json", {"command": " ".join(sys.argv), "machine": machine,
                                       "epochs": args.epochs, "depths": args.depths,
                                       "written": time.strftime("%Y-%m-%d %H:%M:%S"), "cells": results})
    print("\n".join(table))
    print(json.dumps({c: r["verdict"] for c, r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

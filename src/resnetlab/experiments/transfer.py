"""Transfer learning on the data at hand: pretrain on half the classes, fine-tune on the rest.

A ResNet is trained on Fashion-MNIST classes 0-4; then classes 5-9 are learned from 10, 100 and
1000 labelled images per class in three ways, with the same recipe, iterations and seed:
  scratch    a fresh network;
  fine-tune  the pretrained network, new classifier, all layers training (backbone lr x 0.1);
  frozen     the pretrained network, new classifier only (backbone weights and BN statistics fixed).
Test accuracy is measured on all test images of classes 5-9.
"""

from __future__ import annotations

import time

from .common import ExperimentSpec, load_data, pct, read_curves, train_or_reuse, write_results

SIZES = (10, 100, 1000)
MODES = ("scratch", "fine-tune", "frozen")
LENGTHS = {"quick": dict(pretrain_epochs=3, iterations=200), "full": dict(pretrain_epochs=10, iterations=600)}


def run(spec: ExperimentSpec, model: str = "resnet20", sizes: tuple[int, ...] = SIZES,
        first: tuple[int, ...] = (0, 1, 2, 3, 4), second: tuple[int, ...] = (5, 6, 7, 8, 9),
        iterations: int | None = None) -> dict:
    """`spec.epochs` (or the budget) sets the pretraining length; `iterations` (or the budget) the
    length of every run on the target classes."""
    started = time.time()
    length = LENGTHS.get(spec.budget, LENGTHS["quick"])
    iterations = iterations or spec.iterations or length["iterations"]
    data = load_data(spec)
    # Pretraining and fine-tuning use the `fast` recipe (the best short schedule found here).
    pre_recipe = spec.recipe_for(epochs=spec.epochs or length["pretrain_epochs"])
    pre = train_or_reuse(spec, model, data=data, name=f"pretrain-{model}", recipe=pre_recipe,
                         classes=list(first))
    rows, models = {}, {}
    for n in sizes:
        batch = min(128, len(second) * n // 2)   # at least two steps per pass over the images
        steps_per_epoch = len(second) * n // batch
        # Five evaluations per run, whatever an "epoch" of n images per class amounts to.
        recipe = spec.recipe_for(iterations=iterations, batch_size=batch,
                                 eval_every=iterations / 5 / steps_per_epoch)
        for mode in MODES:
            extra = {
                "scratch": {},
                "fine-tune": dict(init_from=str(pre), backbone_lr_mult=0.1),
                "frozen": dict(init_from=str(pre), freeze="backbone"),
            }[mode]
            run_dir = train_or_reuse(spec, model, data=data, name=f"{mode}-{n}", recipe=recipe,
                                     classes=list(second), per_class=n, **extra)
            c = read_curves(run_dir)
            rows.setdefault(n, {})[mode] = 1 - c.final_test_error
            models[f"{mode}-{n}"] = {"per_class": n, "mode": mode, "test_accuracy": 1 - c.final_test_error,
                                     "batch_size": batch, "run_dir": str(run_dir)}
    pre_curves = read_curves(pre)
    table = ["| labelled images per class | from scratch | fine-tune all layers | frozen backbone |",
             "|---|---|---|---|"]
    for n, r in rows.items():
        table.append(f"| {n} | {pct(r['scratch'])} | {pct(r['fine-tune'])} | {pct(r['frozen'])} |")
    table.append("")
    table.append(f"Pretraining: {model} on classes {list(first)} "
                 f"({data.classes[first[0]]} ... {data.classes[first[-1]]}), test accuracy "
                 f"{pct(1 - pre_curves.final_test_error)} on those classes. Target classes {list(second)}; "
                 "accuracy on all their test images.")
    verdicts = []
    for n, r in rows.items():
        best = max(r["fine-tune"], r["frozen"])
        word = "beats" if best > r["scratch"] else "does not beat"
        verdicts.append(f"{n} per class: pretrained {word} scratch ({pct(best)} vs {pct(r['scratch'])})")
    return write_results(spec, "transfer", {"model": model, "pretrain_classes": list(first),
                                            "target_classes": list(second), "accuracy": rows,
                                            "pretrain_test_accuracy": 1 - pre_curves.final_test_error,
                                            "models": models}, "\n".join(table), verdicts, [], started)

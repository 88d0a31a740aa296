"""Transfer learning on the data at hand: pretrain on half the classes, fine-tune on the rest.

A ResNet is trained on Fashion-MNIST classes 0-4; then classes 5-9 are learned from 10, 100 and
1000 labelled images per class in three ways, with the same recipe, iterations and seeds (each
seed pretrains its own network):
  scratch    a fresh network;
  fine-tune  the pretrained network, new classifier, all layers training (backbone lr x 0.1);
  frozen     the pretrained network, new classifier only (backbone weights and BN statistics fixed).
Test accuracy is measured on all test images of classes 5-9.
"""

from __future__ import annotations

import time

from ..stats import summarize
from .common import (
    ExperimentSpec,
    Seeds,
    load_data,
    read_curves,
    seeds_note,
    train_or_reuse,
    versus,
    write_results,
)

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
    pre = {seed: train_or_reuse(spec, model, data=data, name=f"pretrain-{model}", recipe=pre_recipe,
                                seed=seed, classes=list(first)) for seed in spec.seeds}
    rows, models, runs = {}, {}, {}
    for n in sizes:
        batch = min(128, len(second) * n // 2)   # at least two steps per pass over the images
        steps_per_epoch = len(second) * n // batch
        # Five evaluations per run, whatever an "epoch" of n images per class amounts to.
        recipe = spec.recipe_for(iterations=iterations, batch_size=batch,
                                 eval_every=iterations / 5 / steps_per_epoch)
        for mode in MODES:
            def extra(seed, mode=mode):
                return {"scratch": {},
                        "fine-tune": dict(init_from=str(pre[seed]), backbone_lr_mult=0.1),
                        "frozen": dict(init_from=str(pre[seed]), freeze="backbone")}[mode]
            name = f"{mode}-{n}"
            runs[name] = Seeds(f"{mode} ({n}/class)", [read_curves(train_or_reuse(
                spec, model, data=data, name=name, recipe=recipe, seed=seed, classes=list(second),
                per_class=n, **extra(seed))) for seed in spec.seeds])
            acc = summarize([1 - e for e in runs[name].values("final_test_error")])
            rows.setdefault(n, {})[mode] = acc.mean
            models[name] = {"per_class": n, "mode": mode, "test_accuracy": acc.to_dict(), "batch_size": batch,
                            "run_dirs": [str(r.run_dir) for r in runs[name].runs]}
    pre_acc = summarize([1 - read_curves(p).final_test_error for p in pre.values()])
    table = ["| labelled images per class | from scratch | fine-tune all layers | frozen backbone |",
             "|---|---|---|---|"]
    for n in rows:
        cells = [summarize(models[f"{m}-{n}"]["test_accuracy"]["values"]).pct() for m in MODES]
        table.append(f"| {n} | " + " | ".join(cells) + " |")
    table.append("")
    table.append(f"{seeds_note(spec, None, 'Test accuracy')} Pretraining: {model} on classes "
                 f"{list(first)} ({data.classes[first[0]]} ... {data.classes[first[-1]]}), "
                 f"test accuracy {pre_acc.pct()} on those classes. Target classes {list(second)}; accuracy "
                 "on all their test images.")
    verdicts = []
    for n, r in rows.items():
        best = max(("fine-tune", "frozen"), key=lambda m: r[m])   # the better pretrained mode, by mean
        text, _ = versus(runs[f"{best}-{n}"], runs[f"scratch-{n}"], "final_test_error", "test error")
        verdicts.append(f"{n} per class, {best} vs scratch: {text}")
    return write_results(spec, "transfer", {"model": model, "pretrain_classes": list(first),
                                            "target_classes": list(second), "accuracy": rows,
                                            "pretrain_test_accuracy": pre_acc.to_dict(),
                                            "models": models}, "\n".join(table), verdicts, [], started)

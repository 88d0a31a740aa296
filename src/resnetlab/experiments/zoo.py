"""The networks before ResNet against a plain net and a ResNet, under one budget of CPU time.

Every model trains with the same recipe (`fast`: one-cycle SGD), seed and data order for the
same wall-clock budget: its number of iterations is the budget times the training images/s
measured for it on this machine just before its run, with the engine's choice (recorded in the
run's config, so a rerun reuses it and the runs stay deterministic and resumable). The table
gives what each architecture buys with that time: parameters, mult-adds per image, training
images/s, iterations done and test accuracy.

The recipe's peak learning rate suits networks with BatchNorm; one without it (AlexNet) can
diverge there. A model whose loss turns NaN is trained again, in a run folder of its own named
NAME-lrX, at a tenth of the rate (the diverged run stays as evidence); the table gives the rate used.
"""

from __future__ import annotations

import time

from ..models import create_model, summarize
from ..train.engine import choose_engine, resolve_device, time_steps
from ..train.evaluate import load_run_config
from ..train.loop import Diverged
from .common import ExperimentSpec, load_data, pct, read_curves, train_or_reuse, write_results

ZOO = ("lenet5", "alexnet_small", "vgg11_bn_small", "googlenet_small", "plain20", "resnet20")
SECONDS = {"quick": 90, "full": 360}   # training time per model


def run(spec: ExperimentSpec, models: tuple[str, ...] = ZOO, seconds: float | None = None) -> dict:
    started = time.time()
    seconds = seconds or SECONDS.get(spec.budget, SECONDS["quick"])
    data = load_data(spec)
    c, h, w = data.train.shape
    num_classes = len(data.classes)
    base = spec.recipe_for(iterations=1)
    device = resolve_device(spec.device)
    rows, table = {}, []
    for name in models:
        def build(name=name):
            return create_model(name, num_classes=num_classes, in_channels=c)

        started_runs = [spec.out / "runs" / n for n in (_lower_lr_name(name, base.lr), name)
                        if (spec.out / "runs" / n / "config.json").exists()]
        if started_runs:   # a started run keeps the length it was given
            iterations = load_run_config(started_runs[0])["config"]["recipe"]["iterations"]
        else:
            engine = choose_engine(build, name, (c, h, w), base.batch_size, num_classes, device,
                                   base.precision, base.channels_last, "off")
            # Timed now, not read from the engine cache: cached probes of different models come
            # from different moments, and this machine's speed drifts 10-30% over hours.
            rate = time_steps(build(), engine, (c, h, w), base.batch_size, num_classes, min_seconds=3.0)
            # 85% of the budget for steps; evaluations and start-up take the rest.
            iterations = max(20, int(0.85 * seconds * rate / base.batch_size))
        recipe = spec.recipe_for(iterations=iterations, compile="off",
                                 eval_every=iterations / 4 / (len(data.train) // base.batch_size))
        run_dir = _train_or_lower_lr(spec, name, data, recipe)
        curves = read_curves(run_dir)
        counts = summarize(build(), (c, h, w))
        lr = load_run_config(run_dir)["config"]["recipe"]["lr"]
        rows[name] = {"params": counts.params, "mult_adds": counts.mult_adds, "iterations": iterations,
                      "lr": lr,
                      "epochs": iterations * base.batch_size / len(data.train),
                      "images_per_s": curves.summary.get("images_per_s"),
                      "test_accuracy": 1 - curves.final_test_error,
                      "wall_time_s": curves.summary.get("wall_time_s"), "run_dir": str(run_dir)}
    table = [f"| model | params | mult-adds / image ({h}x{w}) | train images/s | iterations (epochs) | "
             "peak lr | run wall time | test accuracy |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        table.append(f"| {name} | {r['params']:,} | {r['mult_adds'] / 1e6:,.1f} M | "
                     f"{r['images_per_s']:.0f} | {r['iterations']} ({r['epochs']:.2f}) | {r['lr']:g} | "
                     f"{r['wall_time_s'] or 0:.0f} s | {pct(r['test_accuracy'])} |")
    table.append("")
    table.append(f"Each model: {seconds:.0f} s of training on this machine (iterations = budget x the "
                 f"images/s measured before its run), recipe `{spec.recipe}`, batch {base.batch_size}, "
                 f"seed {spec.seed}. Run wall time includes start-up and the evaluations (4 during "
                 "training, at the training precision, and the final one in fp32), which the budget "
                 "does not count.")
    best = max(rows, key=lambda k: rows[k]["test_accuracy"])
    verdicts = [f"best test accuracy for {seconds:.0f} s of CPU: {best} ({pct(rows[best]['test_accuracy'])})"]
    if "resnet20" in rows and "plain20" in rows:
        res, plain = rows["resnet20"]["test_accuracy"], rows["plain20"]["test_accuracy"]
        verdicts.append(f"resnet20 {'beats' if res > plain else 'does not beat'} plain20 at equal time "
                        f"({pct(res)} vs {pct(plain)})")
    return write_results(spec, "zoo", {"seconds_per_model": seconds, "models": rows}, "\n".join(table),
                         verdicts, [], started)


def _train_or_lower_lr(spec: ExperimentSpec, name: str, data, recipe):
    """Train (or reuse) NAME at the recipe's lr; if that diverges, NAME-lrX at a tenth of it."""
    from dataclasses import replace

    lower = replace(recipe, lr=recipe.lr / 10)
    retry = _lower_lr_name(name, recipe.lr)
    if not (spec.out / "runs" / retry).exists():
        try:
            return train_or_reuse(spec, name, data=data, recipe=recipe)
        except Diverged as e:
            print(f"{name} at lr {recipe.lr:g}: {e} Training it again at lr {lower.lr:g}.", flush=True)
    return train_or_reuse(spec, name, data=data, recipe=lower, name=retry)


def _lower_lr_name(name: str, lr: float) -> str:
    return f"{name}-lr{lr / 10:g}"

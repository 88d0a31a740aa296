"""The networks before ResNet against a plain net and a ResNet, under one budget of CPU time.

Every model trains with the same recipe (`fast`: one-cycle SGD), seed and data order for the
same wall-clock budget: its number of iterations is the budget times the images/s the engine's
probe measured for it on this machine (cached, and recorded in the run's config, so the runs stay
deterministic and resumable). The table gives what each architecture buys with that time:
parameters, mult-adds per image, training images/s, iterations done and test accuracy.
"""

from __future__ import annotations

import time

import torch

from ..models import count_params, create_model, summarize
from ..train.engine import choose_engine, resolve_device, time_steps
from ..train.evaluate import load_run_config
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

        saved = spec.out / "runs" / name / "config.json"
        if saved.exists():   # a started run keeps the length it was given
            iterations = load_run_config(saved.parent)["config"]["recipe"]["iterations"]
        else:
            engine = choose_engine(build, name, (c, h, w), base.batch_size, num_classes, device,
                                   base.precision, base.channels_last, "off")
            rate = max(engine.probe.values()) if engine.probe else None
            if rate is None:   # engine fixed by flags: time it once for the budget
                rate = time_steps(build(), engine, (c, h, w), base.batch_size, num_classes)
            # 85% of the budget for steps; evaluations and start-up take the rest.
            iterations = max(20, int(0.85 * seconds * rate / base.batch_size))
        recipe = spec.recipe_for(iterations=iterations, compile="off",
                                 eval_every=iterations / 4 / (len(data.train) // base.batch_size))
        run_dir = train_or_reuse(spec, name, data=data, recipe=recipe)
        curves = read_curves(run_dir)
        with torch.device("meta"):
            params = count_params(build())
        mult_adds = summarize(build(), (c, h, w)).mult_adds
        rows[name] = {"params": params, "mult_adds": mult_adds, "iterations": iterations,
                      "epochs": iterations * base.batch_size / len(data.train),
                      "images_per_s": curves.summary.get("images_per_s"),
                      "test_accuracy": 1 - curves.final_test_error,
                      "wall_time_s": curves.summary.get("wall_time_s"), "run_dir": str(run_dir)}
    table = [f"| model | params | mult-adds / image ({h}x{w}) | train images/s | iterations (epochs) | "
             "test accuracy |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        table.append(f"| {name} | {r['params']:,} | {r['mult_adds'] / 1e6:,.1f} M | "
                     f"{r['images_per_s']:.0f} | {r['iterations']} ({r['epochs']:.2f}) | "
                     f"{pct(r['test_accuracy'])} |")
    table.append("")
    table.append(f"Each model: {seconds:.0f} s of training on this machine (iterations = budget x the "
                 f"probed images/s), recipe `{spec.recipe}`, batch {base.batch_size}, seed {spec.seed}.")
    best = max(rows, key=lambda k: rows[k]["test_accuracy"])
    verdicts = [f"best test accuracy for {seconds:.0f} s of CPU: {best} ({pct(rows[best]['test_accuracy'])})"]
    if "resnet20" in rows and "plain20" in rows:
        res, plain = rows["resnet20"]["test_accuracy"], rows["plain20"]["test_accuracy"]
        verdicts.append(f"resnet20 {'beats' if res > plain else 'does not beat'} plain20 at equal time "
                        f"({pct(res)} vs {pct(plain)})")
    return write_results(spec, "zoo", {"seconds_per_model": seconds, "models": rows}, "\n".join(table),
                         verdicts, [], started)

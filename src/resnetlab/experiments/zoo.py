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
from ..run import Run
from ..stats import summarize as summarize_values
from ..train.engine import choose_engine, resolve_device, time_steps
from ..train.loop import Diverged
from .common import (
    ExperimentSpec,
    Seeds,
    load_data,
    read_curves,
    seed_dir,
    train_or_reuse,
    versus,
    write_results,
)

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
    rows, table, seeds = {}, [], {}
    for name in models:
        def build(name=name):
            return create_model(name, num_classes=num_classes, in_channels=c)

        started_runs = [run for n in (_lower_lr_name(name, base.lr), name) for seed in spec.seeds
                        if (run := Run(seed_dir(spec, n, seed))).exists()]
        if started_runs:   # a started run keeps the length it was given
            iterations = started_runs[0].record().config.recipe.iterations
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
        run_dirs = [_train_or_lower_lr(spec, name, data, recipe, seed) for seed in spec.seeds]
        seeds[name] = Seeds(name, [read_curves(r, name) for r in run_dirs])
        counts = summarize(build(), (c, h, w))
        lrs = sorted({Run(r).record().config.recipe.lr for r in run_dirs}, reverse=True)
        rows[name] = {"params": counts.params, "mult_adds": counts.mult_adds, "iterations": iterations,
                      "lr": lrs[0] if len(lrs) == 1 else lrs,
                      "epochs": iterations * base.batch_size / len(data.train),
                      "images_per_s": _mean([r.summary.get("images_per_s") for r in seeds[name].runs]),
                      "test_accuracy": summarize_values([1 - e for e in
                                                         seeds[name].values("final_test_error")]).to_dict(),
                      "wall_time_s": _mean([r.summary.get("wall_time_s") for r in seeds[name].runs]),
                      "run_dirs": [str(r) for r in run_dirs]}
    table = [f"| model | params | mult-adds / image ({h}x{w}) | train images/s | iterations (epochs) | "
             "peak lr | run wall time | test accuracy |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lr = r["lr"] if isinstance(r["lr"], list) else [r["lr"]]
        table.append(f"| {name} | {r['params']:,} | {r['mult_adds'] / 1e6:,.1f} M | "
                     f"{r['images_per_s'] or 0:.0f} | {r['iterations']} ({r['epochs']:.2f}) | "
                     f"{' / '.join(f'{x:g}' for x in lr)} | {r['wall_time_s'] or 0:.0f} s | "
                     f"{summarize_values(r['test_accuracy']['values']).pct()} |")
    table.append("")
    table.append(f"Each model: {seconds:.0f} s of training on this machine (iterations = budget x the "
                 f"images/s measured before its run), recipe `{spec.recipe}`, batch {base.batch_size}, "
                 f"seeds {', '.join(map(str, spec.seeds))} (accuracy: mean ± std over them). Run wall "
                 "time includes start-up and the evaluations (4 during "
                 "training, at the training precision, and the final one in fp32), which the budget "
                 "does not count.")
    ranked = sorted(rows, key=lambda k: -rows[k]["test_accuracy"]["mean"])
    verdicts = [f"best mean test accuracy for {seconds:.0f} s of CPU: {ranked[0]} "
                f"({summarize_values(rows[ranked[0]]['test_accuracy']['values']).pct()})"]
    if len(ranked) > 1:
        text, _ = versus(seeds[ranked[0]], seeds[ranked[1]], "final_test_error", "test error")
        verdicts.append(f"best vs runner-up: {text}")
    if "resnet20" in rows and "plain20" in rows:
        text, _ = versus(seeds["resnet20"], seeds["plain20"], "final_test_error", "test error")
        verdicts.append(f"at equal time: {text}")
    return write_results(spec, "zoo", {"seconds_per_model": seconds, "models": rows}, "\n".join(table),
                         verdicts, [], started)


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _train_or_lower_lr(spec: ExperimentSpec, name: str, data, recipe, seed: int):
    """Train (or reuse) NAME at the recipe's lr; if that diverges, NAME-lrX at a tenth of it."""
    from dataclasses import replace

    lower = replace(recipe, lr=recipe.lr / 10)
    retry = _lower_lr_name(name, recipe.lr)
    if not seed_dir(spec, retry, seed).exists():
        try:
            return train_or_reuse(spec, name, data=data, recipe=recipe, seed=seed)
        except Diverged as e:
            print(f"{name} at lr {recipe.lr:g}: {e} Training it again at lr {lower.lr:g}.", flush=True)
    return train_or_reuse(spec, name, data=data, recipe=lower, name=retry, seed=seed)


def _lower_lr_name(name: str, lr: float) -> str:
    return f"{name}-lr{lr / 10:g}"

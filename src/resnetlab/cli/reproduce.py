"""`resnetlab reproduce EXPERIMENT`: the paper's experiments on real data."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ResnetlabError
from ..experiments import BUDGET_SAMPLE, BUDGET_SEEDS, BUDGETS, EXPERIMENTS, ExperimentSpec
from .flags import add_recipe_flags, recipe_overrides
from .train import seed_list

ENGINE_FIELDS = ("precision", "channels_last", "compile")


def add_commands(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce an experiment (degradation, depth, responses, shortcuts, transfer, zoo)",
        description="Train the experiment's models (or reuse/resume those already in --out), then write "
                    "results.json, a Markdown table and figures into --out and print a verdict.")
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument("--data", default="fashion-mnist", help="data set (default: fashion-mnist)")
    p.add_argument("--data-dir")
    p.add_argument("--budget", default="quick", choices=sorted(BUDGETS),
                   help="quick: minutes (the demo); full: the committed results (hours on a CPU)")
    add_recipe_flags(p, only=("epochs", "iterations"))   # the budget's length, overridden
    p.add_argument("--depths", type=int, nargs="+", help="depths 6n+2 (degradation/responses default "
                   "20 56; depth default 20 32 44 56 110)")
    p.add_argument("--depth", type=int, default=20, help="shortcuts: the depth to compare A/B/C at")
    p.add_argument("--recipe", help="training recipe (default: paper-cifar-warmup, the paper's with a "
                   "warm-up for these short budgets; paper-cifar: exactly the paper's; fast for transfer "
                   "and zoo)")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="N seeds (--seed .. --seed+N-1) or a "
                   "list of two or more; every model trains once per seed (OUT/runs/NAME/seed-S), tables "
                   "give mean ± std, verdicts an interval (default 3)")
    p.add_argument("--jobs", type=int, default=1, help="train N seeds of a model at the same time, each "
                   "with 1/N of the threads (2 on a 2-core CPU: more steps per second in total)")
    p.add_argument("--train-eval-sample", type=int, metavar="N",
                   help="un-augmented training images whose error is measured at each evaluation, the "
                        "training error of tables and verdicts (default: quick 2000, full 10000; 0: the "
                        "running error on augmented batches)")
    p.add_argument("--device", default="auto")
    add_recipe_flags(p, only=ENGINE_FIELDS)
    p.add_argument("--out", help="output folder (default: results/EXPERIMENT-DATA-BUDGET)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=cmd_reproduce)


def cmd_reproduce(args) -> int:
    if args.jobs < 1:
        raise ResnetlabError(f"--jobs must be 1 or more, got {args.jobs}")
    out = Path(args.out or f"results/{args.experiment}-{Path(args.data).name.split('.')[0]}-{args.budget}")
    engine = recipe_overrides(args, only=ENGINE_FIELDS)
    recipe = args.recipe or ("fast" if args.experiment in ("transfer", "zoo") else "paper-cifar-warmup")
    spec = ExperimentSpec(data=args.data, out=out, budget=args.budget, recipe=recipe,
                          epochs=args.epochs, iterations=args.iterations, data_dir=args.data_dir,
                          seeds=tuple(seed_list(args.seeds or [BUDGET_SEEDS[args.budget]], args.seed)),
                          jobs=args.jobs, device=args.device,
                          engine=engine, train_subset=args.train_subset,
                          train_eval_sample=(BUDGET_SAMPLE[args.budget] if args.train_eval_sample is None
                                             else args.train_eval_sample), progress=not args.no_progress)
    module = importlib.import_module(f"..experiments.{args.experiment}", __package__)
    if args.experiment == "shortcuts":
        result = module.run(spec, depth=args.depth)
    elif args.experiment in ("transfer", "zoo"):
        result = module.run(spec)
    else:
        result = module.run(spec, depths=args.depths)
    print(f"\n{args.experiment} on {args.data} (budget {args.budget}), results in {out}/")
    for line in result["verdicts"]:
        print(f"  - {line}")
    for fig in result["figures"]:
        print(f"  figure: {out / fig}")
    print(f"  table: {out / (args.experiment + '.md')}   data: {out / 'results.json'}")
    return 0

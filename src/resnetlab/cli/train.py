"""`resnetlab train` and `resnetlab eval`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..data.augment import NORMALIZATIONS
from ..data.loader import EVAL_VIEWS
from ..errors import ResnetlabError
from ..models.blocks import SHORTCUTS
from ..train.metrics import TENSORBOARD
from ..train.recipe import RECIPES, get_recipe
from .flags import add_recipe_flags, recipe_overrides


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a model with one of the recipes",
                       description="Train a registered model on a data set. Every run writes one "
                                   "folder (config.json, metrics.jsonl, checkpoints, model.safetensors).")
    p.add_argument("--model", help="model name (see `resnetlab models`)")
    p.add_argument("--shortcut", choices=SHORTCUTS, help="shortcut option (model default otherwise)")
    p.add_argument("--zero-init-residual", action="store_true")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last "
                   "checkpoint, with its saved set-up (only --nproc, --nnodes, --node-rank, --rdzv-endpoint, "
                   "--no-progress and --json may be given with it)")
    _add_training_flags(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("finetune", help="fine-tune pretrained weights on a data set",
                       description="Start from a resnetlab run, a torchvision-format weights file, "
                                   "torchvision:NAME or an akamaster CIFAR checkpoint; the classifier is "
                                   "replaced for the new classes; the rest trains as `train` does.")
    p.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                   help="run folder, checkpoint folder, .pth/.th/.safetensors file, or torchvision:NAME")
    p.add_argument("--model", help="architecture of the weights (default: read off the weights)")
    p.add_argument("--freeze", default="none", help="none | backbone | stages:N (the stem and first N "
                   "stages); frozen layers keep their weights and BN statistics")
    p.add_argument("--backbone-lr-mult", type=float, default=1.0,
                   help="learning-rate factor for everything but the new classifier (e.g. 0.1)")
    p.add_argument("--resume", metavar="RUN_DIR", help=argparse.SUPPRESS)
    _add_training_flags(p)
    p.set_defaults(run=cmd_finetune, shortcut=None, zero_init_residual=False)

    p = sub.add_parser("import", help="make a run folder from external weights (torchvision, akamaster, "
                                      "...), so eval / predict / export / show work on them")
    p.add_argument("source", help=".pth/.th/.safetensors file, run folder, or torchvision:NAME")
    p.add_argument("--data", required=True, help="the data set the weights classify (class names, size)")
    p.add_argument("--data-dir")
    p.add_argument("--model", help="architecture (default: read off the weights)")
    p.add_argument("--normalize", default="imagenet", choices=NORMALIZATIONS,
                   help="the input normalisation the weights were trained with (default: imagenet)")
    p.add_argument("--out", required=True, help="the run folder to write")
    p.set_defaults(run=cmd_import)

    p = sub.add_parser("eval", help="evaluate a trained run: top-1/top-5 error, per-class accuracy, "
                                    "confusion matrix")
    p.add_argument("run_dir", metavar="RUN_OR_FILE", help="a run folder written by `resnetlab train`, or an "
                   ".onnx file of `resnetlab export` (run in onnxruntime, with its sidecar's preprocessing)")
    p.add_argument("--data", help="data set (default: the one the run was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--eval-view", choices=EVAL_VIEWS, help="evaluate with this view instead of the run's "
                   "own (e.g. flip: test-time flip averaging of a run trained without it); run folders only")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON (top1_error, top5_error as fractions)")
    p.set_defaults(run=cmd_eval)


def _add_training_flags(p) -> None:
    """Flags shared by train and finetune: data, recipe overrides, engine, run folder."""
    p.add_argument("--data", help="fashion-mnist, mnist, cifar10, cifar100, or a folder/archive of images")
    p.add_argument("--data-dir", help="where to look for data sets first")
    p.add_argument("--classes", type=int, nargs="+", help="train on these class indices only")
    p.add_argument("--per-class", type=int, help="at most N training images per class")
    p.add_argument("--recipe", default="fast", choices=sorted(RECIPES), help="named recipe (default: fast); "
                   "every recipe field below overrides it")
    add_recipe_flags(p.add_argument_group("recipe fields (default: the named recipe's)"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="several seeds: N (seeds --seed .. "
                   "--seed+N-1) or a list of two or more; one run folder OUT/seed-S each (a finished one is "
                   "reused, a partial one resumed) and OUT/seeds.json with mean ± std")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints "
                   "(default: every epoch)")
    p.add_argument("--log-every", type=int, default=0, help="steps between training-metric records "
                   "(default: about 10 per epoch)")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--train-eval-sample", type=int, default=0, metavar="N", help="at each evaluation also "
                   "measure the error on a fixed sample of N un-augmented training images")
    p.add_argument("--image-size", type=int, help="image folders: resize the shorter side to this and "
                   "centre-crop a square (default: keep the size when all images share one)")
    p.add_argument("--stream", default="auto", choices=["auto", "on", "off"],
                   help="image folders: decode batch by batch in worker processes instead of holding "
                        "the folder in memory (auto: when it would take over 1/4 of the RAM)")
    p.add_argument("--nproc", type=int, default=1, help="train with N processes on this machine "
                   "(a shortcut for torchrun --standalone --nproc_per_node=N -m resnetlab train ...)")
    p.add_argument("--nnodes", type=int, default=1, help="several machines: run the same command on "
                   "each with its --node-rank and one --rdzv-endpoint (torchrun's c10d rendezvous)")
    p.add_argument("--node-rank", type=int, default=0, help="several machines: this machine's number, "
                   "0 .. nnodes-1")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="several machines: where they meet "
                   "(an address of node 0 and a free port)")
    p.add_argument("--sync-bn", action="store_true", help="several processes: BatchNorm statistics over "
                   "the global batch (SyncBatchNorm)")
    p.add_argument("--tensorboard", default="auto", choices=TENSORBOARD,
                   help="TensorBoard event files in the run folder (`tensorboard --logdir runs/`); auto: "
                        "when the tensorboard package is installed (pip install 'resnetlab[tensorboard]')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _config_from_args(args, model: str, options: dict, **extra):
    from ..train.loop import TrainConfig

    return TrainConfig(model=model, data=args.data, out=_out_dir(args, model),
                       recipe=get_recipe(args.recipe, **recipe_overrides(args)), model_options=options,
                       data_dir=args.data_dir, seed=args.seed, device=args.device,
                       checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                       train_subset=args.train_subset, train_eval_sample=args.train_eval_sample,
                       image_size=args.image_size, stream=args.stream,
                       sync_bn=args.sync_bn, classes=args.classes, per_class=args.per_class,
                       tensorboard=args.tensorboard, **extra)


def cmd_finetune(args) -> int:
    from ..transfer import load_source

    if not args.data:
        raise ResnetlabError("finetune needs --data")

    def config():
        source = load_source(args.source, args.model)
        return _config_from_args(args, source.model, source.options, init_from=args.source,
                                 freeze=args.freeze, backbone_lr_mult=args.backbone_lr_mult)
    return _train_and_report(args, config)


def cmd_train(args) -> int:
    def config():
        if not args.model or not args.data:
            raise ResnetlabError("train needs --model and --data (or --resume RUN_DIR)")
        options = {"shortcut": args.shortcut} if args.shortcut else {}
        if args.zero_init_residual:
            options["zero_init_residual"] = True
        return _config_from_args(args, args.model, options)
    return _train_and_report(args, config)


def _train_and_report(args, config) -> int:
    """Relaunch under torchrun when --nproc asks for it; else resume or train a new `config()`."""
    from ..train.distributed import launched_by_torchrun, shutdown
    from ..train.loop import resume, train

    _check_launch_flags(args)
    if args.resume:
        if args.seeds:
            raise ResnetlabError("--seeds and --resume do not go together: run the same --seeds command "
                                 "again, and it resumes every unfinished seed")
        _check_resume_flags(args.argv)
    if args.nproc * args.nnodes > 1 and not launched_by_torchrun():
        return _relaunch_with_torchrun(args)
    if args.seeds:
        summary = _train_seeds(args, config())
    elif args.resume:
        summary = resume(args.resume, progress=not args.no_progress)
    else:
        summary = train(config(), progress=not args.no_progress)
    shutdown()   # on success only: tearing down a group whose peer died can hang (NCCL)
    return _report(args, summary)


def seed_list(seeds: list[int], first: int = 0) -> list[int]:
    """--seeds N: N seeds from --seed on; --seeds A B ...: those."""
    if len(seeds) == 1:
        if seeds[0] < 1:
            raise ResnetlabError(f"--seeds N needs N >= 1, got {seeds[0]}")
        return list(range(first, first + seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise ResnetlabError(f"--seeds lists a seed twice: {seeds}")
    return list(seeds)


def _train_seeds(args, base) -> dict:
    """One run per seed in OUT/seed-S (reused or resumed when there), then OUT/seeds.json."""
    import dataclasses

    from ..stats import summarize
    from ..train.checkpoint import write_json
    from ..train.loop import finish_run

    root = Path(base.out)
    seeds = seed_list(args.seeds, args.seed)
    runs = {}
    for seed in seeds:
        cfg = dataclasses.replace(base, seed=seed, out=str(root / f"seed-{seed}"))
        runs[seed] = finish_run(cfg, progress=not args.no_progress,
                                also=("classes", "per_class", "init_from", "freeze"))
    metrics = ("test_top1_error", "test_top5_error", "final_train_error", "train_sample_top1_error")
    result = {"model": base.model, "data": base.data, "recipe": base.recipe.name, "seeds": seeds,
              "runs": [str(root / f"seed-{s}") for s in seeds],
              **{m: summarize([runs[s][m] for s in seeds]).to_dict() for m in metrics
                 if all(runs[s].get(m) is not None for s in seeds)},
              "per_seed": {str(s): runs[s] for s in seeds}}
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(root / "seeds.json", result)
    return result


def _report(args, summary: dict) -> int:
    if int(os.environ.get("RANK", "0")) != 0:   # under torchrun, rank 0 reports
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    elif "seeds" in summary:
        from ..stats import summarize

        err = summarize(summary["test_top1_error"]["values"])
        each = ", ".join(f"seed {s}: {100 * v:.2f}%"
                         for s, v in zip(summary["seeds"], err.values, strict=True))
        where = Path(summary["runs"][0]).parent / "seeds.json"
        print(f"test error {err.pct()} over {err.n} seeds ({each}); {where}")
    else:
        print(f"test accuracy {summary['test_accuracy']:.4f} (top-1 error {summary['test_top1_error']:.4f}, "
              f"top-5 error {summary['test_top5_error']:.4f}) after {summary['epochs']:.1f} epochs "
              f"in {summary['wall_time_s']:.0f} s")
    return 0


def _out_dir(args, model: str | None = None) -> str:
    if args.out:
        return args.out
    model = model or args.model or "model"
    return str(Path("runs") / f"{model}-{Path(args.data or 'data').name.split('.')[0]}")


_LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")
# What may be given with --resume: how the run is launched and shown, never what it computes (the
# saved config.json decides that, device and engine included, so the arithmetic stays the same).
RESUME_FLAGS = ("--resume", *_LAUNCH_FLAGS, "--no-progress", "--json")


def _check_resume_flags(argv: list[str]) -> None:
    given = [a.split("=")[0] for a in argv if a.startswith("--")]
    other = [f for f in dict.fromkeys(given) if f not in RESUME_FLAGS]
    if other:
        raise ResnetlabError(f"--resume continues a run exactly as it was set up, so {', '.join(other)} "
                             f"cannot be given with it (only {', '.join(RESUME_FLAGS[1:])} can); to "
                             "change the set-up, train a new run with another --out")


def _check_launch_flags(args) -> None:
    if args.nproc < 1 or args.nnodes < 1:
        raise ResnetlabError(f"--nproc and --nnodes must be 1 or more, got {args.nproc} and {args.nnodes}")
    if args.nnodes > 1:
        if not args.rdzv_endpoint:
            raise ResnetlabError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (an address of node 0 and "
                                 "a free port, the same on every node)")
        if not 0 <= args.node_rank < args.nnodes:
            raise ResnetlabError(f"--node-rank must be 0 .. {args.nnodes - 1}, got {args.node_rank}")


def _without_launch_flags(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in _LAUNCH_FLAGS:
            skip = True
        elif not a.startswith(tuple(f + "=" for f in _LAUNCH_FLAGS)):
            out.append(a)
    return out


def _relaunch_with_torchrun(args) -> int:
    """Run this same command under torchrun (--nproc processes here, on each of --nnodes machines);
    a failure becomes one line that says how to resume."""
    import subprocess
    import sys

    from ..train.distributed import resume_flags

    if args.nnodes > 1:
        where = ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", args.rdzv_endpoint, "--rdzv-id", "resnetlab"]
    else:
        where = ["--standalone"]
    cmd = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={args.nproc}",
           "-m", "resnetlab", *_without_launch_flags(args.argv)]
    code = subprocess.run(cmd).returncode
    if code != 0:
        world = args.nproc * args.nnodes
        stopped = (f"the {world}-process run stopped (torchrun exit code {code}; the failing rank is "
                   "named above)")
        if args.seeds:   # --resume takes one run folder; the same --seeds command resumes each seed
            raise ResnetlabError(f"{stopped}; run the same command again: it resumes every unfinished seed")
        out = args.resume or _out_dir(args)
        raise ResnetlabError(f"{stopped}; resume it with `resnetlab train --resume {out} "
                             + resume_flags(args.nproc, args.nnodes, args.rdzv_endpoint))
    return 0


def cmd_import(args) -> int:
    from ..transfer import import_run

    out = import_run(args.source, args.out, args.data, args.normalize, args.data_dir, args.model)
    print(f"wrote {out}: evaluate it with `resnetlab eval {out}`")
    return 0


def cmd_eval(args) -> int:
    from ..exported import evaluate_exported, is_exported
    from ..train.evaluate import evaluate_run

    if is_exported(args.run_dir):
        if args.eval_view:
            raise ResnetlabError("--eval-view applies to run folders; an .onnx file is evaluated with the "
                                 "view it was exported with (its sidecar's eval_view)")
        r = evaluate_exported(args.run_dir, data=args.data, data_dir=args.data_dir, split=args.split)
    else:
        r = evaluate_run(args.run_dir, data=args.data, data_dir=args.data_dir, device=args.device,
                         split=args.split, view=args.eval_view)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['model']} on {r['data']} ({r['split']}, {r['n']} images): top-1 error {r['top1_error']:.4f}, "
          f"top-5 error {r['top5_error']:.4f}, loss {r['loss']:.4f}")
    width = max(len(c) for c in r["classes"])
    print("per-class accuracy:")
    for name, acc in r["per_class_accuracy"].items():
        print(f"  {name:<{width}}  {acc:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for name, row in zip(r["classes"], r["confusion_matrix"], strict=True):
        print(f"  {name:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    return 0

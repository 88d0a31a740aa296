"""The training loop: read it top to bottom.

    cfg = TrainConfig(model="resnet20", data="fashion-mnist", out="runs/r20", recipe=get_recipe("fast"))
    result = train(cfg)

One run = one folder: config.json (everything needed to rebuild the run, the engine choice
included), preprocess.safetensors (normalisation), metrics.jsonl, checkpoints/, and at the end
model.safetensors + summary.json. `train(cfg_or_dir, resume=True)` continues from the newest
complete checkpoint; on CPU the result is bit-identical to an uninterrupted run, because data
order and augmentation are functions of (seed, epoch, batch) and every piece of state that
changes during training (weights, optimiser buffers, RNG, schedule state, metric windows) is in
the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import __version__
from ..data.augment import Normalizer
from ..data.loader import View
from ..data.sources import DataSplits, ImageSet, restrict
from ..data.stream import images_for_statistics, loader_for, open_data
from ..errors import ResnetlabError
from ..models import create_model, get_entry
from ..models.classic import classic_loss, main_logits
from ..transfer import classifier_heads, freeze, initialize, load_source
from . import distributed
from .checkpoint import (
    latest_checkpoint,
    load_weights_into,
    optimizer_from_tensors,
    restore_rng,
    save_checkpoint,
    save_weights,
    write_json,
)
from .engine import Engine, choose_engine, machine_id, resolve_device
from .evaluate import evaluate, load_run_config
from .metrics import MetricsLog
from .recipe import Recipe, Schedule, recipe_from_dict


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    recipe: Recipe
    model_options: dict = field(default_factory=dict)
    data_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0      # steps between checkpoints; 0: at the end of every epoch only
    log_every: int = 0             # steps between train records; 0: about 10 per epoch
    train_subset: int | None = None  # first N training images only (quick studies)
    sync_bn: bool = False            # several processes: BatchNorm statistics over the global batch
    init_from: str | None = None     # fine-tuning: a run, a weights file or torchvision:NAME
    freeze: str = "none"             # fine-tuning: none | backbone | stages:N
    backbone_lr_mult: float = 1.0    # fine-tuning: learning-rate factor for all but the classifier
    classes: list[int] | None = None  # keep only these classes (relabelled 0..k-1)
    per_class: int | None = None     # at most this many training images per class
    image_size: int | None = None    # image folders: resize + centre-crop to this square side
    stream: str = "auto"             # image folders: auto (stream if too big for memory) | on | off
    train_eval_sample: int = 0       # also evaluate this many un-augmented training images (a fixed
                                     # sample, the same for every seed) at each evaluation

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["recipe"] = self.recipe.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["recipe"] = recipe_from_dict(d["recipe"])
        return cls(**kw)


class Diverged(ResnetlabError):
    """The loss became NaN or infinite."""


def split_validation(train: ImageSet, n_val: int, seed: int) -> tuple[ImageSet, ImageSet | None]:
    # Works for a StreamSet too: both have __len__ and subset().
    """Hold out `n_val` training images (a fixed random subset) for validation, e.g. the
    paper's 45k/5k split of CIFAR-10."""
    if not n_val:
        return train, None
    if n_val >= len(train):
        raise ResnetlabError(f"--val-split {n_val} leaves no training images (the set has {len(train)})")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 7919))
    return train.subset(perm[n_val:].sort().values), train.subset(perm[:n_val].sort().values)


def train_eval_sample(train: ImageSet, n: int) -> ImageSet:
    """A fixed random sample of `n` training images (all of them if fewer), evaluated without
    augmentation: the training error the paper's curves mean, not the running error on augmented
    batches. The generator's seed is fixed, so every seed and every net sees the same images."""
    if n < 0:
        raise ResnetlabError(f"--train-eval-sample must be 0 or more, got {n}")
    if n >= len(train):
        return train
    return train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(104729))[:n]
                        .sort().values)


def model_depth(model: torch.nn.Module) -> int:
    """Weighted layers on the main path (convolutions and fully connected layers, not the shortcut
    projections): 110 for ResNet-110, as the paper counts."""
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for name, m in model.named_modules()
               if "downsample" not in name)


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


def train(cfg: TrainConfig | str | Path, resume: bool = False, data: DataSplits | None = None,
          progress: bool = True) -> dict:
    """Train per `cfg` (or resume the run folder `cfg`); returns the summary dict.

    Under torchrun every rank calls this; each trains on its slice of every global batch, DDP
    averages gradients, metrics are summed over ranks, and only rank 0 writes files.
    """
    t_start = time.time()
    d = distributed.init(cfg.device if isinstance(cfg, TrainConfig) else "auto")
    # ---- the run folder: a new run, or the saved config of the run to resume -------------------
    if resume:
        out = Path(cfg.out if isinstance(cfg, TrainConfig) else cfg)
        saved = load_run_config(out)
        cfg = TrainConfig.from_dict(saved["config"])
        cfg.out = str(out)
    else:
        out = Path(cfg.out)
        if latest_checkpoint(out) or (out / "model.safetensors").exists():
            raise ResnetlabError(f"{out} already holds a run; continue it with --resume {out} or "
                                 "choose another --out")
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
    recipe = cfg.recipe
    progress = progress and d.is_main

    # ---- data ------------------------------------------------------------------------------------
    data = data or open_data(cfg.data, data_dir=cfg.data_dir, image_size=cfg.image_size, stream=cfg.stream)
    data = restrict(data, cfg.classes, cfg.per_class, cfg.seed)
    train_set, val_set = split_validation(data.train, recipe.val_split, cfg.seed)
    if cfg.train_subset:
        train_set = train_set.subset(slice(0, cfg.train_subset))
    classes, num_classes = data.classes, len(data.classes)
    c, h, w = train_set.shape
    size = recipe.crop_size or min(h, w)
    input_size = (c, size, size) if recipe.crop_size else (c, h, w)

    # ---- model, engine, optimiser, schedule ---------------------------------------------------------
    device = distributed.device_for(d, resolve_device(cfg.device))

    def build():
        return create_model(cfg.model, num_classes=num_classes, in_channels=c, **cfg.model_options)

    get_entry(cfg.model)  # fail early on a bad name
    torch.manual_seed(cfg.seed)
    model = build()
    if cfg.init_from:   # a resumed run then overwrites these with its checkpoint
        _log_main(d, initialize(model, load_source(cfg.init_from, cfg.model)))
    frozen = freeze(model, cfg.freeze)
    normalizer = Normalizer.fit(images_for_statistics(train_set), recipe.normalize)
    steps_per_epoch = len(train_set) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ResnetlabError(f"{len(train_set)} training images make no batch of {recipe.batch_size}; "
                             "lower --batch-size")
    total_steps = recipe.total_steps(steps_per_epoch)
    if resume:
        engine = Engine.from_dict({**saved["engine"], "chosen_by": "resume"})
    else:
        engine = None
        if d.is_main:   # one probe, at the per-rank batch size; every rank uses its answer
            engine = choose_engine(build, cfg.model, input_size, recipe.batch_size // d.world_size,
                                   num_classes, device, recipe.precision, recipe.channels_last,
                                   recipe.compile, expected_steps=total_steps, log=_log)
        engine = Engine.from_dict(distributed.broadcast(engine.to_dict() if engine else None, d))
    engine.device = str(device)
    if device.type == "cpu" and engine.threads and engine.threads != torch.get_num_threads():
        # How a CPU kernel splits its sums depends on the thread count, so a resumed run (and every
        # rank) uses the count the run started with: resume stays bit-identical.
        if resume:
            _log_main(d, f"using the run's {engine.threads} threads, not this process's "
                         f"{torch.get_num_threads()}, so the arithmetic is the one the run started with")
        torch.set_num_threads(engine.threads)
    model.to(device, engine.dtype, memory_format=engine.memory_format)
    if d.enabled and cfg.sync_bn:
        model = distributed.convert_sync_batchnorm(model, device)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.backbone_lr_mult), lr=recipe.lr,
                                momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    warm = bool(recipe.warmup_lr) and model_depth(model) >= recipe.warmup_min_depth
    schedule = Schedule(recipe, total_steps, state={"warm": warm})
    log = MetricsLog(out / "metrics.jsonl")
    window = _empty_window()
    step = 0

    if resume:
        if ckpt := latest_checkpoint(out):
            load_weights_into(model, ckpt.model_tensors(), str(ckpt.path))
            opt_t = ckpt.optim_tensors()
            optimizer_from_tensors(optimizer, opt_t, ckpt.state["optimizer"])
            restore_rng(opt_t, d.rank)
            schedule.state = ckpt.state["schedule"]
            window = ckpt.state["window"]
            step = ckpt.step
        if d.is_main:
            log.truncate_after(step)
        _log_main(d, f"resuming {out} at step {step}/{total_steps} ({engine.label()})")
    elif d.is_main:
        log.path.unlink(missing_ok=True)
        save_weights(out / "preprocess.safetensors", normalizer)
        write_json(out / "config.json", {
            "config": cfg.to_dict(), "engine": engine.to_dict(), "classes": classes,
            "input_size": list(input_size), "stored_size": [c, h, w], "num_classes": num_classes,
            "data_source": data.source, "train_images": len(train_set),
            "val_images": len(val_set) if val_set else 0, "test_images": len(data.test),
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "world_size": d.world_size,
            "machine": machine_id(device), "torch": torch.__version__, "resnetlab": __version__,
        })
        if frozen:
            _log(f"frozen (weights and BN statistics): {', '.join(frozen)}")
        _log(f"training {cfg.model} on {cfg.data} ({len(train_set)} images, {num_classes} classes) "
             f"for {total_steps} steps with {recipe.name}; engine: {engine.label()} "
             f"[{engine.chosen_by}: {engine.probe}]" + (f"; {d.world_size} processes" if d.enabled else ""))

    # ---- loaders: each rank its slice of every training batch and its share of the test set ------
    train_view = View(recipe.augment, recipe.pad, recipe.crop_size, pca_lighting=recipe.pca_lighting)
    eval_view = View(recipe.eval_view, size=recipe.crop_size)
    common = dict(normalizer=normalizer, device=device, channels_last=engine.channels_last,
                  dtype=engine.dtype)
    train_loader = loader_for(train_set, recipe.batch_size, train=True, view=train_view, seed=cfg.seed,
                              rank=d.rank, world_size=d.world_size, **common)
    eval_sets = {"test": data.test, **({"val": val_set} if val_set is not None else {})}
    if cfg.train_eval_sample:
        eval_sets["train_sample"] = train_eval_sample(train_set, cfg.train_eval_sample)
    eval_loaders = {k: loader_for(v.subset(distributed.shard(len(v), d)) if d.enabled else v,
                                  recipe.eval_batch_size, train=False, view=eval_view, **common)
                    for k, v in eval_sets.items()}

    # ---- the loop ----------------------------------------------------------------------------------
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if d.enabled else model
    forward = torch.compile(net) if engine.compile else net
    # About 10 records per epoch, and at least 50 over a short run (a curve, not three points).
    log_every = cfg.log_every or max(1, min(steps_per_epoch // 10, total_steps // 50))
    eval_every = max(1, round(recipe.eval_every * steps_per_epoch))
    bar = tqdm(total=total_steps, initial=step, unit="step", disable=not progress, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    last_eval: dict = {}
    model.train()
    try:
        while step < total_steps:
            epoch = step // steps_per_epoch
            t_batch = time.perf_counter()
            for x, y in train_loader.epoch(epoch, start=step % steps_per_epoch):
                lr = schedule.lr(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                with engine.autocast():
                    outputs = forward(x)
                    loss = classic_loss(outputs, y, lambda o, t: F.cross_entropy(
                        o.to(engine.dtype), t, label_smoothing=recipe.label_smoothing))
                logits = main_logits(outputs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                # One sync per step (summed over ranks): the metrics and the NaN guard, the same
                # decision on every rank.
                loss_sum, correct, seen = distributed.sum_over_ranks(
                    [loss.item() * y.shape[0], float((logits.argmax(1) == y).sum()), float(y.shape[0])], d)
                if not math.isfinite(loss_sum):
                    bar.close()
                    raise _diverged(out, step, epoch, lr, loss_sum)
                step += 1
                window["loss"] += loss_sum
                window["correct"] += int(correct)
                window["seen"] += int(seen)
                window["steps"] += 1
                window["seconds"] += time.perf_counter() - t_batch
                if schedule.state.get("warm"):
                    schedule.after_train_error(1 - correct / seen)
                bar.update(1)

                if step % log_every == 0 or step == total_steps:
                    rec = _train_record(window, step, steps_per_epoch, lr, time.time() - t_start)
                    if d.is_main:
                        log.write(rec)
                    bar.set_postfix(loss=f"{rec['train_loss']:.3f}", err=f"{rec['train_error']:.3f}",
                                    ips=f"{rec['images_per_s']:.0f}", **last_eval)
                    window = _empty_window()
                if step % eval_every == 0 or step == total_steps:
                    rec = {"kind": "eval", "step": step, "epoch": step / steps_per_epoch, "lr": lr}
                    # Evaluations along the way run at the training precision (half the time of
                    # fp32 on a CPU with bf16); the last one, the run's reported result, in fp32.
                    final_eval = step == total_steps
                    rec["precision"] = ("fp32" if final_eval and engine.precision != "fp64"
                                        else engine.precision)
                    for split, loader in eval_loaders.items():
                        r = evaluate(model, loader, num_classes, d,
                                     autocast=None if final_eval else engine.autocast)
                        rec.update({f"{split}_loss": r.loss, f"{split}_top1_error": r.top1_error,
                                    f"{split}_top5_error": r.top5_error})
                    rec["time"] = time.time() - t_start
                    if d.is_main:
                        log.write(rec)
                    schedule.after_eval(rec.get("val_top1_error", rec["test_top1_error"]))
                    last_eval = {"test_err": f"{rec['test_top1_error']:.4f}"}
                    bar.set_postfix(**last_eval)
                if (step % steps_per_epoch == 0 or step == total_steps
                        or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                    rngs = distributed.gather(torch.get_rng_state(), d)   # every rank's RNG
                    if d.is_main:
                        save_checkpoint(out, step, model, optimizer,
                                        {"epoch": step / steps_per_epoch, "schedule": schedule.state,
                                         "window": window}, rng_states=rngs)
                t_batch = time.perf_counter()
                if step >= total_steps:
                    break
    except RuntimeError as e:
        if d.enabled and distributed.is_peer_failure(e):
            raise ResnetlabError(f"rank {d.rank}: another process of this {d.world_size}-process run "
                                 f"stopped ({str(e).splitlines()[0][:120]}); resume with "
                                 f"`resnetlab train --resume {out} --nproc {d.world_size}`") from None
        raise
    finally:
        bar.close()

    # ---- the end: final weights and a summary -------------------------------------------------------
    summary = None
    if d.is_main:
        save_weights(out / "model.safetensors", model, {"model": cfg.model, "step": step})
        summary = _summary(cfg, log, step, steps_per_epoch, engine)
        write_json(out / "summary.json", summary)
        _log(f"done: test error {summary['test_top1_error']:.4f} (top-5 {summary['test_top5_error']:.4f}) "
             f"after {step} steps; weights in {out / 'model.safetensors'}")
    summary = distributed.broadcast(summary, d)
    distributed.barrier(d)
    return summary


# The config fields a run folder must agree on to be reused or resumed by finish_run.
SAME_RUN = ("model", "data", "model_options", "seed", "train_subset")


def finish_run(cfg: TrainConfig, data: DataSplits | None = None, progress: bool = True,
               also: tuple[str, ...] = ()) -> dict:
    """Train `cfg` to the end: a finished run in cfg.out is reused, a partial one resumed, if its
    saved config agrees on SAME_RUN + `also` and on the recipe's optimisation (not its engine
    fields); else a new run. Returns the run's summary."""
    out = Path(cfg.out)
    if (out / "config.json").exists():
        saved = load_run_config(out)["config"]
        mine = cfg.to_dict()
        same = all(saved.get(k) == mine[k] for k in (*SAME_RUN, *also))
        if not (same and _same_recipe(saved["recipe"], mine["recipe"])):
            raise ResnetlabError(f"{out} holds a run with a different set-up (budget, recipe or seed); "
                                 "use another --out, or delete that folder to retrain it")
        if (out / "summary.json").exists():
            return json.loads((out / "summary.json").read_text())
        return train(out, resume=True, data=data, progress=progress)
    return train(cfg, data=data, progress=progress)


def _same_recipe(a: dict, b: dict) -> bool:
    # The engine fields may legitimately differ (probe vs flags); the optimisation may not.
    ignore = {"precision", "channels_last", "compile", "notes"}
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (JSON has no tuples)
    return all(norm(a.get(k)) == norm(b.get(k)) for k in (set(a) | set(b)) - ignore)


def _param_groups(model: torch.nn.Module, backbone_lr_mult: float) -> list[dict]:
    """Trainable parameters in two groups: the classifier at the schedule's lr, the rest at
    lr * backbone_lr_mult (1 unless fine-tuning asks for a gentler backbone)."""
    heads = classifier_heads(model)
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if any(name.startswith(h + ".") for h in heads) else body).append(p)
    groups = [{"params": body, "lr_mult": backbone_lr_mult}, {"params": head, "lr_mult": 1.0}]
    return [g for g in groups if g["params"]]


def _empty_window() -> dict:
    return {"loss": 0.0, "correct": 0, "seen": 0, "steps": 0, "seconds": 0.0}


def _train_record(window: dict, step: int, steps_per_epoch: int, lr: float, elapsed: float) -> dict:
    return {"kind": "train", "step": step, "epoch": step / steps_per_epoch, "lr": lr,
            "train_loss": window["loss"] / window["seen"],
            "train_error": 1 - window["correct"] / window["seen"],
            "images_per_s": window["seen"] / max(window["seconds"], 1e-9), "time": elapsed}


def _summary(cfg: TrainConfig, log: MetricsLog, step: int, steps_per_epoch: int, engine: Engine) -> dict:
    records = log.read()
    evals = [r for r in records if r["kind"] == "eval"]
    trains = [r for r in records if r["kind"] == "train"]
    final = evals[-1]
    summary = {
        "model": cfg.model, "data": cfg.data, "recipe": cfg.recipe.name, "steps": step,
        "epochs": step / steps_per_epoch, "engine": engine.label(),
        "test_top1_error": final["test_top1_error"], "test_top5_error": final["test_top5_error"],
        "test_accuracy": 1 - final["test_top1_error"],
        "best_test_top1_error": min(r["test_top1_error"] for r in evals),
        "final_train_error": trains[-1]["train_error"] if trains else None,
        "images_per_s": (sum(r["images_per_s"] for r in trains) / len(trains)) if trains else None,
        "wall_time_s": final["time"],
    }
    for key in ("val_top1_error", "train_sample_top1_error"):
        if key in final:
            summary[key] = final[key]
    return summary


def _log_main(d, msg: str) -> None:
    if d.is_main:
        _log(msg)


def _diverged(out: Path, step: int, epoch: int, lr: float, value: float) -> Diverged:
    ckpt = latest_checkpoint(out)
    kept = (f"the last good checkpoint ({ckpt.path}, step {ckpt.step}) is kept" if ckpt
            else "no checkpoint had been written yet")
    return Diverged(f"training diverged: loss became {value} at step {step + 1} (epoch {epoch}, lr {lr:g}); "
                    f"{kept}. Lower --lr, add warm-up, or use --precision fp32.")

"""The training loop: read it top to bottom.

    cfg = TrainConfig(model="resnet20", data="fashion-mnist", out="runs/r20", recipe=get_recipe("fast"))
    summary = train(cfg)          # a new run in cfg.out
    summary = resume("runs/r20")  # continue it from its newest complete checkpoint

One run = one folder (`resnetlab.run`): config.json, preprocess.safetensors, metrics.jsonl,
checkpoints/, and at the end model.safetensors + summary.json. On CPU a resumed run is
bit-identical to an uninterrupted one, because data order and augmentation are functions of
(seed, epoch, batch) and every piece of state that changes during training (weights, optimiser
buffers, RNG, schedule state, metric windows, the weight average of --ema, the slow weights of
--lookahead) is in the checkpoint.

The loop (`_loop`) is four named steps: `_train_step`, `_log_train`, `_evaluate`, `_checkpoint`;
`_set_up` builds what they share (a `Session`) for a new run or a resumed one.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import __version__
from ..data.augment import Normalizer
from ..data.loader import BatchLoader, View
from ..data.open import images_for_statistics, loader_for, open_data
from ..data.splits import DataSplits, ImageSet, restrict
from ..errors import ResnetlabError
from ..models import create_model, get_entry, loss_and_logits
from ..run import Run, RunRecord
from ..transfer import classifier_heads, freeze, initialize, load_source
from . import distributed
from .checkpoint import (
    load_weights_into,
    lookahead_tensors,
    optimizer_from_tensors,
    restore_ema,
    restore_rng,
    save_checkpoint,
    save_weights,
)
from .config import TrainConfig
from .distributed import Dist
from .ema import WeightEMA
from .engine import Engine, choose_engine, machine_id, resolve_device
from .evaluate import evaluate
from .lookahead import Lookahead
from .metrics import MetricsLog, tensorboard_writer
from .recipe import Recipe, Schedule

__all__ = ["TrainConfig", "Diverged", "train", "resume", "finish_run"]


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


def train(cfg: TrainConfig, data: DataSplits | None = None, progress: bool = True) -> dict:
    """A new run per `cfg`, written to cfg.out; returns the summary dict.

    Under torchrun every rank calls this; each trains on its slice of every global batch, DDP
    averages gradients, metrics are summed over ranks, and only rank 0 writes files.
    """
    run = Run(cfg.out)
    if run.started():
        raise ResnetlabError(f"{run.root} already holds a run; continue it with --resume {run.root} or "
                             "choose another --out")
    return _train(cfg, run, None, data, progress)


def resume(run_dir: str | Path, data: DataSplits | None = None, progress: bool = True) -> dict:
    """Continue the run in `run_dir` from its newest complete checkpoint (from step 0 if it has
    none), with its saved config and engine; returns the summary dict."""
    run = Run(run_dir)
    record = run.record()      # before the process group: its device decides the backend
    record.config.out = str(run.root)
    return _train(record.config, run, record, data, progress)


@dataclass
class Session:
    """What the loop's steps share. `record` is the saved run when resuming, else None."""

    cfg: TrainConfig
    run: Run
    d: Dist
    record: RunRecord | None
    model: torch.nn.Module
    forward: Callable            # the model as called in training: DDP and/or compiled
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    engine: Engine
    train_loader: BatchLoader
    eval_loaders: dict[str, BatchLoader]
    num_classes: int
    steps_per_epoch: int
    total_steps: int
    log: MetricsLog
    t_start: float
    step: int = 0
    window: dict | None = None
    ema: WeightEMA | None = None   # --ema: the weight average, updated after every step
    lookahead: Lookahead | None = None   # --lookahead: the slow weights, synced every few steps

    @property
    def recipe(self) -> Recipe:
        return self.cfg.recipe

    @property
    def eval_model(self) -> torch.nn.Module:
        """What evaluations and the final weights use: the weight average with --ema, else the model."""
        return self.ema.module if self.ema is not None else self.model


def _train(cfg: TrainConfig, run: Run, record: RunRecord | None, data: DataSplits | None,
           progress: bool) -> dict:
    t_start = time.time()
    d = distributed.init(cfg.device)
    s = _set_up(cfg, run, record, d, data, t_start)
    _loop(s, progress and d.is_main)
    return _finish(s)


def _set_up(cfg: TrainConfig, run: Run, record: RunRecord | None, d: Dist, data: DataSplits | None,
            t_start: float) -> Session:
    """Data, model, engine, optimiser, schedule and loaders; for a resumed run, the newest
    checkpoint loaded into them; for a new one, the run folder's config.json written."""
    recipe = cfg.recipe
    if d.is_main:
        run.root.mkdir(parents=True, exist_ok=True)

    # ---- data ----------------------------------------------------------------------------------------
    data = data or open_data(cfg.data, data_dir=cfg.data_dir, image_size=cfg.image_size, stream=cfg.stream)
    data = restrict(data, cfg.classes, cfg.per_class, cfg.seed)
    train_set, val_set = split_validation(data.train, recipe.val_split, cfg.seed)
    if cfg.train_subset:
        train_set = train_set.subset(slice(0, cfg.train_subset))
    classes, num_classes = data.classes, len(data.classes)
    c, h, w = train_set.shape
    size = recipe.crop_size or min(h, w)
    input_size = (c, size, size) if recipe.crop_size else (c, h, w)

    # ---- model, engine, optimiser, schedule ------------------------------------------------------------
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
    if record:
        engine = Engine.from_dict({**record.engine.to_dict(), "chosen_by": "resume"})
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
        if record:
            _log_main(d, f"using the run's {engine.threads} threads, not this process's "
                         f"{torch.get_num_threads()}, so the arithmetic is the one the run started with")
        torch.set_num_threads(engine.threads)
    model.to(device, engine.dtype, memory_format=engine.memory_format)
    if d.enabled and cfg.sync_bn:
        model = distributed.convert_sync_batchnorm(model, device)
    optimizer = torch.optim.SGD(_param_groups(model, cfg.backbone_lr_mult, recipe.weight_decay,
                                              recipe.bn_weight_decay), lr=recipe.lr,
                                momentum=recipe.momentum, nesterov=recipe.nesterov,
                                weight_decay=recipe.weight_decay)
    # A copy of the model as placed (device, dtype, SyncBN), before DDP wraps it.
    ema = WeightEMA(model, recipe.ema) if recipe.ema else None
    lookahead = Lookahead(model, recipe.lookahead, recipe.lookahead_steps) if recipe.lookahead else None
    warm = bool(recipe.warmup_lr) and model_depth(model) >= recipe.warmup_min_depth
    schedule = Schedule(recipe, total_steps, state={"warm": warm})
    log = MetricsLog(run.metrics_file)
    window, step = _empty_window(), 0

    if record:
        if ckpt := run.latest_checkpoint():
            load_weights_into(model, ckpt.model_tensors(), str(ckpt.path))
            opt_t = ckpt.optim_tensors()
            optimizer_from_tensors(optimizer, opt_t, ckpt.state["optimizer"])
            restore_rng(opt_t, d.rank)
            if ema is not None:
                restore_ema(ema, ckpt)
            if lookahead is not None:
                lookahead.load(lookahead_tensors(ckpt), str(ckpt.path))
            schedule.state = ckpt.state["schedule"]
            window = ckpt.state["window"]
            step = ckpt.step
        if d.is_main:
            log.truncate_after(step)
        _log_main(d, f"resuming {run.root} at step {step}/{total_steps} ({engine.label()})")
    elif d.is_main:
        log.path.unlink(missing_ok=True)
        save_weights(run.preprocess_file, normalizer)
        run.save_record(RunRecord(
            config=cfg, engine=engine, classes=classes, input_size=input_size, stored_size=(c, h, w),
            num_classes=num_classes, data_source=data.source, train_images=len(train_set),
            val_images=len(val_set) if val_set else 0, test_images=len(data.test),
            steps_per_epoch=steps_per_epoch, total_steps=total_steps, world_size=d.world_size,
            machine=machine_id(device), torch=torch.__version__, resnetlab=__version__))
        if frozen:
            _log(f"frozen (weights and BN statistics): {', '.join(frozen)}")
        _log(f"training {cfg.model} on {cfg.data} ({len(train_set)} images, {num_classes} classes) "
             f"for {total_steps} steps with {recipe.name}; engine: {engine.label()} "
             f"[{engine.chosen_by}: {engine.probe}]" + (f"; {d.world_size} processes" if d.enabled else ""))
    if d.is_main:   # a resumed run's events past its checkpoint are dropped: they are logged again
        log.mirror = tensorboard_writer(run.root, cfg.tensorboard, purge_step=step + 1 if record else None)

    # ---- loaders: each rank its slice of every training batch and its share of the test set ----------
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

    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if d.enabled else model
    forward = torch.compile(net) if engine.compile else net
    return Session(cfg, run, d, record, model, forward, optimizer, schedule, engine, train_loader,
                   eval_loaders, num_classes, steps_per_epoch, total_steps, log, t_start, step, window, ema,
                   lookahead)


def _loop(s: Session, progress: bool) -> None:
    # About 10 records per epoch, and at least 50 over a short run (a curve, not three points).
    log_every = s.cfg.log_every or max(1, min(s.steps_per_epoch // 10, s.total_steps // 50))
    eval_every = max(1, round(s.recipe.eval_every * s.steps_per_epoch))
    every = s.cfg.checkpoint_every   # steps between checkpoints besides each epoch's end
    bar = tqdm(total=s.total_steps, initial=s.step, unit="step", disable=not progress, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)
    last_eval: dict = {}
    s.model.train()
    try:
        while s.step < s.total_steps:
            epoch = s.step // s.steps_per_epoch
            t_batch = time.perf_counter()
            for x, y in s.train_loader.epoch(epoch, start=s.step % s.steps_per_epoch):
                lr = _train_step(s, x, y, t_batch)
                bar.update(1)
                last = s.step == s.total_steps
                if s.step % log_every == 0 or last:
                    rec = _log_train(s, lr)
                    bar.set_postfix(loss=f"{rec['train_loss']:.3f}", err=f"{rec['train_error']:.3f}",
                                    ips=f"{rec['images_per_s']:.0f}", **last_eval)
                if s.step % eval_every == 0 or last:
                    last_eval = {"test_err": f"{_evaluate(s, lr, final=last)['test_top1_error']:.4f}"}
                    bar.set_postfix(**last_eval)
                if s.step % s.steps_per_epoch == 0 or last or (every and s.step % every == 0):
                    _checkpoint(s)
                t_batch = time.perf_counter()
                if s.step >= s.total_steps:
                    break
    except RuntimeError as e:
        d = s.d
        if d.enabled and distributed.is_peer_failure(e):
            raise ResnetlabError(f"rank {d.rank}: another process of this {d.world_size}-process run "
                                 f"stopped ({str(e).splitlines()[0][:120]}); resume with `resnetlab "
                                 f"train --resume {s.run.root} {distributed.launch_flags(d)}") from None
        raise
    finally:
        bar.close()


def _train_step(s: Session, x: torch.Tensor, y: torch.Tensor, t_batch: float) -> float:
    """One optimiser step on the batch (x, y); the step's metrics into the window. Returns the lr."""
    lr = s.schedule.lr(s.step)
    for group in s.optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    with s.engine.autocast():
        outputs = s.forward(x)
        loss, logits = loss_and_logits(s.model, outputs, y, lambda o, t: F.cross_entropy(
            o.to(s.engine.dtype), t, label_smoothing=s.recipe.label_smoothing))
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    s.optimizer.step()
    if s.lookahead is not None:
        s.lookahead.after_step(s.model, s.step + 1, s.total_steps)
    if s.ema is not None:
        s.ema.update_parameters(s.model)
    # One sync per step (summed over ranks): the metrics and the NaN guard, the same decision on
    # every rank.
    loss_sum, correct, seen = distributed.sum_over_ranks(
        [loss.item() * y.shape[0], float((logits.argmax(1) == y).sum()), float(y.shape[0])], s.d)
    if not math.isfinite(loss_sum):
        raise _diverged(s.run, s.step, s.step // s.steps_per_epoch, lr, loss_sum)
    s.step += 1
    w = s.window
    w["loss"] += loss_sum
    w["correct"] += int(correct)
    w["seen"] += int(seen)
    w["steps"] += 1
    w["seconds"] += time.perf_counter() - t_batch
    if s.schedule.state.get("warm"):
        s.schedule.after_train_error(1 - correct / seen)
    return lr


def _log_train(s: Session, lr: float) -> dict:
    """A train record of the window since the last one (rank 0 writes it); a new window."""
    w = s.window
    rec = {"kind": "train", "step": s.step, "epoch": s.step / s.steps_per_epoch, "lr": lr,
           "train_loss": w["loss"] / w["seen"], "train_error": 1 - w["correct"] / w["seen"],
           "images_per_s": w["seen"] / max(w["seconds"], 1e-9), "time": time.time() - s.t_start}
    if s.d.is_main:
        s.log.write(rec)
    s.window = _empty_window()
    return rec


def _evaluate(s: Session, lr: float, final: bool) -> dict:
    """An eval record: every evaluation split (test, val, train sample). Evaluations along the way
    run at the training precision (half the time of fp32 on a CPU with bf16); the last one, the
    run's reported result, in fp32. With --ema they evaluate the weight average."""
    precision = s.engine.precision
    rec = {"kind": "eval", "step": s.step, "epoch": s.step / s.steps_per_epoch, "lr": lr,
           "precision": "fp32" if final and precision != "fp64" else precision}
    for split, loader in s.eval_loaders.items():
        r = evaluate(s.eval_model, loader, s.num_classes, s.d, autocast=None if final else s.engine.autocast)
        rec.update({f"{split}_loss": r.loss, f"{split}_top1_error": r.top1_error,
                    f"{split}_top5_error": r.top5_error})
    rec["time"] = time.time() - s.t_start
    if s.d.is_main:
        s.log.write(rec)
    s.schedule.after_eval(rec.get("val_top1_error", rec["test_top1_error"]))
    return rec


def _checkpoint(s: Session) -> None:
    rngs = distributed.gather(torch.get_rng_state(), s.d)   # every rank's RNG
    if s.d.is_main:
        save_checkpoint(s.run.root, s.step, s.model, s.optimizer,
                        {"epoch": s.step / s.steps_per_epoch, "schedule": s.schedule.state,
                         "window": s.window}, rng_states=rngs, ema=s.ema,
                        lookahead=s.lookahead.slow if s.lookahead is not None else None)


def _finish(s: Session) -> dict:
    """The final weights (the weight average with --ema) and summary.json (rank 0); every rank
    returns the summary."""
    summary = None
    if s.d.is_main:
        meta = {"model": s.cfg.model, "step": s.step, **({"ema": s.recipe.ema} if s.ema is not None else {})}
        save_weights(s.run.weights_file, s.eval_model, meta)
        summary = _summary(s.cfg, s.log, s.step, s.steps_per_epoch, s.engine)
        s.run.save_summary(summary)
        s.log.close()
        _log(f"done: test error {summary['test_top1_error']:.4f} (top-5 {summary['test_top5_error']:.4f}) "
             f"after {s.step} steps; weights in {s.run.weights_file}")
    summary = distributed.broadcast(summary, s.d)
    distributed.barrier(s.d)
    return summary


# The config fields a run folder must agree on to be reused or resumed by finish_run.
SAME_RUN = ("model", "data", "model_options", "seed", "train_subset")


def finish_run(cfg: TrainConfig, data: DataSplits | None = None, progress: bool = True,
               also: tuple[str, ...] = ()) -> dict:
    """Train `cfg` to the end: a finished run in cfg.out is reused, a partial one resumed, if its
    saved config agrees on SAME_RUN + `also` and on the recipe's optimisation (not its engine
    fields); else a new run. Returns the run's summary."""
    run = Run(cfg.out)
    if run.exists():
        saved = run.raw_record()["config"]
        mine = cfg.to_dict()
        same = all(saved.get(k) == mine[k] for k in (*SAME_RUN, *also))
        if not (same and _same_recipe(saved["recipe"], mine["recipe"])):
            raise ResnetlabError(f"{run.root} holds a run with a different set-up (budget, recipe or seed); "
                                 "use another --out, or delete that folder to retrain it")
        return run.summary() or resume(run.root, data=data, progress=progress)
    return train(cfg, data=data, progress=progress)


def _same_recipe(a: dict, b: dict) -> bool:
    # The engine fields may legitimately differ (probe vs flags); the optimisation may not. A field
    # missing from a recipe saved before it existed has its default, which is the old behaviour.
    ignore = {"precision", "channels_last", "compile", "notes"}
    default = Recipe().to_dict()
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (JSON has no tuples)
    return all(norm(a.get(k, default.get(k))) == norm(b.get(k, default.get(k)))
               for k in (set(a) | set(b)) - ignore)


def _param_groups(model: torch.nn.Module, backbone_lr_mult: float, weight_decay: float,
                  bn_weight_decay: float | None = None) -> list[dict]:
    """Trainable parameters in groups, each with its lr_mult and weight_decay: the classifier at the
    schedule's lr, the rest at lr * backbone_lr_mult (1 unless fine-tuning asks for a gentler
    backbone); with bn_weight_decay given, each split again into BatchNorm weights and biases (every
    parameter with ndim <= 1) at bn_weight_decay and the rest at weight_decay. Empty groups are
    dropped. Without bn_weight_decay the groups are the two they always were, in the same order, so
    older checkpoints' optimiser state still maps onto the same parameters."""
    heads = classifier_heads(model)
    found: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            head = any(name.startswith(h + ".") for h in heads)
            found.setdefault((head, bn_weight_decay is not None and p.ndim <= 1), []).append(p)
    return [{"params": found[key], "lr_mult": 1.0 if key[0] else backbone_lr_mult,
             "weight_decay": bn_weight_decay if key[1] else weight_decay}
            for key in ((False, False), (False, True), (True, False), (True, True)) if key in found]


def _empty_window() -> dict:
    return {"loss": 0.0, "correct": 0, "seen": 0, "steps": 0, "seconds": 0.0}


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


def _diverged(run: Run, step: int, epoch: int, lr: float, value: float) -> Diverged:
    ckpt = run.latest_checkpoint()
    kept = (f"the last good checkpoint ({ckpt.path}, step {ckpt.step}) is kept" if ckpt
            else "no checkpoint had been written yet")
    return Diverged(f"training diverged: loss became {value} at step {step + 1} (epoch {epoch}, lr {lr:g}); "
                    f"{kept}. Lower --lr, add warm-up, or use --precision fp32.")

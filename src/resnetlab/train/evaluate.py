"""Evaluation: of a model on a loader, and of a run (`resnetlab.run`) on a data set."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.augment import Normalizer, crop_mean
from ..data.loader import EVAL_VIEWS, BatchLoader, View
from ..data.open import loader_for, open_data
from ..data.splits import restrict
from ..errors import ResnetlabError
from ..run import RunRecord, load_trained
from .distributed import Dist, sum_over_ranks, sum_tensor_over_ranks
from .engine import at_least_fp32, resolve_device
from .metrics import EvalResult, confusion_matrix, topk_correct


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: BatchLoader, num_classes: int, d: Dist | None = None,
             autocast=None) -> EvalResult:
    """Top-1/top-5 error, loss and confusion matrix over the whole loader; fp32 unless `autocast`
    (a context-manager factory, e.g. Engine.autocast) is given.

    A "ten-crop" view yields 10 crops per image, a "flip" view the image and its mirror (both
    crop-major); their softmax scores are averaged.
    With several processes each evaluates its share and the sums are added over ranks.
    """
    was_training = model.training
    model.eval()
    loss_sum, hits, n = 0.0, [0, 0], 0
    preds, labels = [], []
    for x, y in loader.epoch():
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(x)
        logits = at_least_fp32(logits)
        if logits.shape[0] != y.shape[0]:   # ten-crop / flip: average the probabilities of the views
            logits = crop_mean(logits.float().softmax(1), y.shape[0]).clamp_min(1e-12).log()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        for i, c in enumerate(topk_correct(logits, y, (1, 5))):
            hits[i] += c
        n += y.shape[0]
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    conf = (confusion_matrix(torch.cat(preds), torch.cat(labels), num_classes) if preds
            else torch.zeros(num_classes, num_classes, dtype=torch.int64))
    if d is not None and d.enabled:
        loss_sum, top1, top5, n = sum_over_ranks([loss_sum, *hits, n], d)
        hits, n = [top1, top5], int(n)
        conf = sum_tensor_over_ranks(conf, d)
    if n == 0:
        raise ResnetlabError("nothing to evaluate: the evaluation set is empty")
    return EvalResult(n, loss_sum / n, 1 - hits[0] / n, 1 - hits[1] / n, conf)


def open_run_data(record: RunRecord, data: str | None = None, data_dir: str | None = None):
    """(spec, splits): the data a run is evaluated on; by default the data set it was trained on,
    with its preprocessing settings, restricted to the classes it was trained on."""
    cfg = record.config
    spec = data or cfg.data
    splits = open_data(spec, data_dir=data_dir or cfg.data_dir, image_size=cfg.image_size, stream=cfg.stream)
    return spec, restrict(splits, cfg.classes, None)


def eval_loader(images, record: RunRecord, normalizer: Normalizer, device,
                batch_size: int = 512, view: str | None = None) -> BatchLoader:
    """The images of a split as the run's evaluation sees them: its view (or `view`, e.g. "flip" for
    test-time flip averaging of a run trained without it), its normalisation, channels_last."""
    recipe = record.config.recipe
    view = View(view or recipe.eval_view, size=recipe.crop_size)
    return loader_for(images, batch_size, train=False, view=view, normalizer=normalizer, device=device,
                      channels_last=True)


def evaluate_split(model: torch.nn.Module, record: RunRecord, normalizer: Normalizer, spec, splits,
                   split: str = "test", device="cpu", batch_size: int = 512, view: str | None = None) -> dict:
    """`evaluate_run` for a model and data already loaded (`load_trained`, `open_run_data`)."""
    images = getattr(splits, split, None)
    if images is None:
        raise ResnetlabError(f"data set {spec!r} has no {split!r} split")
    channels = images.shape[0]
    if channels != record.channels or len(splits.classes) != record.num_classes:
        raise ResnetlabError(
            f"{spec} ({channels} channel(s), {len(splits.classes)} classes) does not match "
            f"the run ({record.channels} channel(s), {record.num_classes} classes); "
            "evaluate it on the data set it was trained on")
    loader = eval_loader(images, record, normalizer, device, batch_size, view)
    result = evaluate(model.to(memory_format=torch.channels_last), loader, record.num_classes)
    return {"data": spec, "split": split, "model": record.config.model,
            "eval_view": view or record.config.recipe.eval_view, **result.to_dict(record.classes)}


def evaluate_run(run_dir: str | Path, data: str | None = None, data_dir: str | None = None,
                 device: str = "auto", split: str = "test", batch_size: int = 512,
                 view: str | None = None) -> dict:
    """Top-1/top-5 error, per-class accuracy and confusion matrix of a run on a data set
    (default: the data set it was trained on), in fp32, with the run's own preprocessing and
    evaluation view (or `view`: one of EVAL_VIEWS)."""
    if view is not None and view not in EVAL_VIEWS:
        raise ResnetlabError(f"--eval-view must be one of {', '.join(EVAL_VIEWS)}, got {view!r}")
    dev = resolve_device(device)
    model, record, normalizer = load_trained(run_dir, dev)
    spec, splits = open_run_data(record, data, data_dir)
    result = evaluate_split(model, record, normalizer, spec, splits, split, dev, batch_size, view)
    return {"run": str(run_dir), **result}

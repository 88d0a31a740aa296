"""Evaluation: of a model on a loader, and of a finished run folder on a data set."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.augment import Normalizer
from ..data.loader import BatchLoader, View
from ..data.sources import restrict
from ..data.stream import loader_for, open_data
from ..errors import ResnetlabError
from ..models import create_model
from .checkpoint import CHECKPOINTS, latest_checkpoint, load_weights_into, read_weights
from .distributed import Dist, sum_over_ranks, sum_tensor_over_ranks
from .engine import at_least_fp32, resolve_device
from .metrics import EvalResult, confusion_matrix, topk_correct


def load_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ResnetlabError(f"{run_dir} is not a run folder (no config.json); give the --out folder of "
                             "a `resnetlab train` run")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResnetlabError(f"{path} is corrupt ({e}); the run cannot be resumed from it") from None


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: BatchLoader, num_classes: int, d: Dist | None = None,
             autocast=None) -> EvalResult:
    """Top-1/top-5 error, loss and confusion matrix over the whole loader; fp32 unless `autocast`
    (a context-manager factory, e.g. Engine.autocast) is given.

    A "ten-crop" view yields 10 crops per image (crop-major); their softmax scores are averaged.
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
        if logits.shape[0] != y.shape[0]:   # ten-crop: average the probabilities of the crops
            logits = crop_probabilities(logits, y.shape[0]).clamp_min(1e-12).log()
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


def resolve_run(path: str | Path) -> tuple[Path, Path]:
    """(run folder, weights file) for a run folder, a `checkpoints/step-N` folder inside one, or a
    .safetensors weights file in either."""
    p = Path(path)
    if not p.exists():
        raise ResnetlabError(f"{p} not found; give a run folder (the --out of `resnetlab train`) or one "
                             f"of its {CHECKPOINTS}/step-N folders")
    weights = None
    if p.is_file():
        if p.suffix != ".safetensors" or p.name == "preprocess.safetensors":
            raise ResnetlabError(f"{p} is a file; give a run folder or a {CHECKPOINTS}/step-N folder")
        weights, p = p, p.parent
    if (p / "config.json").is_file():
        if weights is None:
            if (p / "model.safetensors").is_file():
                weights = p / "model.safetensors"
            elif ckpt := latest_checkpoint(p):
                weights = ckpt.path / "model.safetensors"
            else:
                raise ResnetlabError(f"{p} has no weights yet (no model.safetensors, no checkpoint)")
        return p, weights
    if p.parent.name == CHECKPOINTS and (p.parent.parent / "config.json").is_file():
        if p.name.endswith(".tmp") or not (p / "state.json").is_file():
            raise ResnetlabError(f"{p} is a half-written checkpoint; use a complete {CHECKPOINTS}/step-N "
                                 "folder or the run folder")
        return p.parent.parent, weights or p / "model.safetensors"
    load_run_config(p)   # raises "... is not a run folder (no config.json) ..."
    raise AssertionError("unreachable")


def load_trained(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict, Normalizer]:
    """The model of a run (a run folder: its final weights, or its latest checkpoint while unfinished;
    a checkpoints/step-N folder; or a weights file in either), its config.json, and its
    normalisation."""
    run_dir, weights = resolve_run(path)
    saved = load_run_config(run_dir)
    cfg = saved["config"]
    model = create_model(cfg["model"], num_classes=saved["num_classes"], in_channels=saved["input_size"][0],
                         **cfg.get("model_options", {}))
    load_weights_into(model, read_weights(weights), str(weights))
    pre = read_weights(run_dir / "preprocess.safetensors")
    return model.to(device).eval(), saved, Normalizer(pre["mean"], pre["std"])


def open_run_data(saved: dict, data: str | None = None, data_dir: str | None = None):
    """(spec, splits): the data a run is evaluated on; by default the data set it was trained on,
    with its preprocessing settings, restricted to the classes it was trained on."""
    cfg = saved["config"]
    spec = data or cfg["data"]
    splits = open_data(spec, data_dir=data_dir or cfg.get("data_dir"), image_size=cfg.get("image_size"),
                       stream=cfg.get("stream", "auto"))
    return spec, restrict(splits, cfg.get("classes"), None)


def eval_loader(images, saved: dict, normalizer: Normalizer, device, batch_size: int = 512) -> BatchLoader:
    """The images of a split as the run's evaluation sees them: its view, its normalisation,
    channels_last."""
    recipe = saved["config"]["recipe"]
    view = View(recipe.get("eval_view", "none"), size=recipe.get("crop_size"))
    return loader_for(images, batch_size, train=False, view=view, normalizer=normalizer, device=device,
                      channels_last=True)


def crop_probabilities(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax scores of n images; a ten-crop view gives k x n rows (crop-major), averaged."""
    probs = logits.float().softmax(1)
    return probs.view(-1, n, probs.shape[1]).mean(0) if probs.shape[0] != n else probs


def evaluate_split(model: torch.nn.Module, saved: dict, normalizer: Normalizer, spec, splits,
                   split: str = "test", device="cpu", batch_size: int = 512) -> dict:
    """`evaluate_run` for a model and data already loaded (`load_trained`, `open_run_data`)."""
    images = getattr(splits, split, None)
    if images is None:
        raise ResnetlabError(f"data set {spec!r} has no {split!r} split")
    channels = images.shape[0]
    if channels != saved["input_size"][0] or len(splits.classes) != saved["num_classes"]:
        raise ResnetlabError(
            f"{spec} ({channels} channel(s), {len(splits.classes)} classes) does not match "
            f"the run ({saved['input_size'][0]} channel(s), {saved['num_classes']} classes); "
            "evaluate it on the data set it was trained on")
    loader = eval_loader(images, saved, normalizer, device, batch_size)
    result = evaluate(model.to(memory_format=torch.channels_last), loader, saved["num_classes"])
    return {"data": spec, "split": split, "model": saved["config"]["model"],
            **result.to_dict(saved["classes"])}


def evaluate_run(run_dir: str | Path, data: str | None = None, data_dir: str | None = None,
                 device: str = "auto", split: str = "test", batch_size: int = 512) -> dict:
    """Top-1/top-5 error, per-class accuracy and confusion matrix of a run on a data set
    (default: the data set it was trained on), in fp32, with the run's own preprocessing."""
    dev = resolve_device(device)
    model, saved, normalizer = load_trained(run_dir, dev)
    spec, splits = open_run_data(saved, data, data_dir)
    result = evaluate_split(model, saved, normalizer, spec, splits, split, dev, batch_size)
    return {"run": str(run_dir), **result}

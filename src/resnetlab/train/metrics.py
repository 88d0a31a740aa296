"""Top-k errors, confusion matrices and the JSONL metrics log."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ResnetlabError


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the k highest scores, for each k (k capped at C)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, :min(k, kmax)].any(1).sum()) for k in ks]


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """C x C counts: row = true class, column = predicted class."""
    idx = labels.to(torch.int64) * num_classes + preds.to(torch.int64)
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


@dataclass
class EvalResult:
    n: int
    loss: float
    top1_error: float
    top5_error: float
    confusion: torch.Tensor = field(repr=False)

    @property
    def per_class_accuracy(self) -> list[float]:
        c = self.confusion.double()
        return (c.diag() / c.sum(1).clamp_min(1)).tolist()

    def to_dict(self, classes: list[str] | None = None) -> dict:
        names = classes or [str(i) for i in range(self.confusion.shape[0])]
        return {
            "n": self.n, "loss": self.loss, "top1_error": self.top1_error, "top5_error": self.top5_error,
            "per_class_accuracy": dict(zip(names, self.per_class_accuracy, strict=True)),
            "confusion_matrix": self.confusion.tolist(), "classes": names,
        }


TENSORBOARD = ("auto", "on", "off")


def tensorboard_writer(log_dir: str | Path, mode: str = "auto", purge_step: int | None = None):
    """A TensorBoard SummaryWriter writing event files into `log_dir` (the run folder, so
    `tensorboard --logdir runs/` shows every run), or None: mode "off", or "auto" where the
    tensorboard package is not installed. `purge_step`: events of the interrupted attempt from this
    step on are dropped (a resumed run logs them again; metrics.jsonl keeps up to its checkpoint)."""
    if mode not in TENSORBOARD:
        raise ResnetlabError(f"--tensorboard must be one of {', '.join(TENSORBOARD)}, got {mode!r}")
    if mode == "off":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if mode == "on":
            raise ResnetlabError("--tensorboard on needs the tensorboard package: "
                                 "pip install 'resnetlab[tensorboard]'") from None
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class MetricsLog:
    """Append-only JSON lines, flushed per record so a killed run keeps what it logged; the source of
    truth. `mirror`, a TensorBoard SummaryWriter, gets every numeric field as a scalar too
    ("train/train_loss", "eval/test_top1_error", ...)."""

    def __init__(self, path: str | Path, mirror=None):
        self.path = Path(path)
        self.mirror = mirror

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.mirror is not None:
            kind, step = record.get("kind", "record"), record.get("step", 0)
            for key, value in record.items():
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                if numeric and key not in ("kind", "step"):
                    self.mirror.add_scalar(f"{kind}/{key}", value, step)
            self.mirror.flush()

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()

    def read(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run redoes those steps and logs them again)."""
        if not self.path.exists():
            return
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.path)


def read_metrics(path: str | Path) -> list[dict]:
    """All complete records; a torn last line (process killed mid-write) is ignored."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out

"""The run folder: its layout, its record, and the one rule for finding a run from a path.

    RUN/
      config.json              RunRecord: the TrainConfig, the engine, the classes, the sizes, the
                               data source and the versions it was trained with
      preprocess.safetensors   the normalisation (mean, std) the run's inputs get
      metrics.jsonl            train and eval records, appended as the run goes
      checkpoints/step-N/      weights + optimiser + RNG + loop state (train/checkpoint.py)
      model.safetensors        the final weights (once finished)
      summary.json             the final result (once finished)

`Run(path)` is a run folder; `find_run(path)` accepts what a user may point at (a run folder, one of
its checkpoints/step-N folders, or a .safetensors weights file in either) and says which weights
that means. Every command that reads a run (eval, predict, export, report, show, resume, finetune,
the experiments) goes through here, so the rule and the error lines are written once.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .data.augment import Normalizer
from .errors import ResnetlabError
from .models import create_model
from .train.checkpoint import (
    CHECKPOINTS,
    STATE,
    WEIGHTS,
    Checkpoint,
    checkpoint_weights,
    latest_checkpoint,
    load_weights_into,
    read_weights,
    write_json,
)
from .train.config import TrainConfig
from .train.engine import Engine

CONFIG = "config.json"
PREPROCESS = "preprocess.safetensors"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"

NOT_A_RUN = "is not a run folder (no config.json); give the --out folder of a `resnetlab train` run"


@dataclass
class RunRecord:
    """What config.json holds. Training writes every field; a run imported from foreign weights
    (`resnetlab import`) has no training counts (0) and says where its weights came from."""

    config: TrainConfig
    engine: Engine
    classes: list[str]
    input_size: tuple[int, int, int]     # what the network takes (C, H, W), after any crop
    stored_size: tuple[int, int, int]    # the images as the data set stores them
    num_classes: int
    data_source: str = ""
    train_images: int = 0
    val_images: int = 0
    test_images: int = 0
    steps_per_epoch: int = 0
    total_steps: int = 0
    world_size: int = 1
    machine: str = ""
    torch: str = ""
    resnetlab: str = ""
    imported_from: str | None = None     # import only: the weights' origin, and a description
    description: str | None = None

    @property
    def channels(self) -> int:
        return self.input_size[0]

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["config"], d["engine"] = self.config.to_dict(), self.engine.to_dict()
        d["input_size"], d["stored_size"] = list(self.input_size), list(self.stored_size)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["config"] = TrainConfig.from_dict(d["config"])
        kw["engine"] = Engine.from_dict(d.get("engine", {}))
        kw["input_size"] = tuple(d["input_size"])
        kw["stored_size"] = tuple(d.get("stored_size") or d["input_size"])
        return cls(**kw)


class Run:
    """A run folder on disk: its files by name, its record, its weights."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run folder at `path`, or one error line when it is none."""
        root = Path(path)
        if not root.is_dir():
            raise ResnetlabError(f"{path}: no such run folder; give the --out folder of a "
                                 "`resnetlab train` run")
        if not (root / CONFIG).is_file():
            raise ResnetlabError(f"{path} {NOT_A_RUN}")
        return cls(root)

    # ---- its files ----------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.root / CONFIG

    @property
    def preprocess_file(self) -> Path:
        return self.root / PREPROCESS

    @property
    def metrics_file(self) -> Path:
        return self.root / METRICS

    @property
    def weights_file(self) -> Path:
        return self.root / WEIGHTS

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY

    # ---- its state ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_file.is_file()

    def finished(self) -> bool:
        return self.summary_file.is_file()

    def started(self) -> bool:
        """Training has written weights (a checkpoint or the final ones): a new run may not go here."""
        return self.weights_file.exists() or self.latest_checkpoint() is not None

    def latest_checkpoint(self) -> Checkpoint | None:
        return latest_checkpoint(self.root)

    def record(self) -> RunRecord:
        return RunRecord.from_dict(self.raw_record())

    def raw_record(self) -> dict:
        """config.json as written (for comparing saved settings key by key)."""
        if not self.config_file.is_file():
            raise ResnetlabError(f"{self.root} {NOT_A_RUN}")
        try:
            return json.loads(self.config_file.read_text())
        except json.JSONDecodeError as e:
            raise ResnetlabError(f"{self.config_file} is corrupt ({e}); the run cannot be resumed "
                                 "or read from it") from None

    def save_record(self, record: RunRecord) -> None:
        write_json(self.config_file, record.to_dict())

    def summary(self) -> dict | None:
        return json.loads(self.summary_file.read_text()) if self.finished() else None

    def save_summary(self, summary: dict) -> None:
        write_json(self.summary_file, summary)

    def weights(self) -> Path:
        """The final weights, or the latest checkpoint's while the run is unfinished (its weight
        average for a run with --ema, as the run evaluates it)."""
        if self.weights_file.is_file():
            return self.weights_file
        if ckpt := self.latest_checkpoint():
            return checkpoint_weights(ckpt.path)
        raise ResnetlabError(f"{self.root} has no weights yet (no {WEIGHTS}, no checkpoint)")


def find_run(path: str | Path) -> tuple[Run, Path]:
    """(run, weights file) for a run folder (its final weights, or its latest checkpoint's while
    unfinished), a `checkpoints/step-N` folder inside one (for a run with --ema, its weight average:
    what the run evaluates), or a .safetensors weights file in either."""
    p = Path(path)
    if not p.exists():
        raise ResnetlabError(f"{p} not found; give a run folder (the --out of `resnetlab train`) or one "
                             f"of its {CHECKPOINTS}/step-N folders")
    weights = None
    if p.is_file():
        if p.suffix != ".safetensors" or p.name == PREPROCESS:
            raise ResnetlabError(f"{p} is a file; give a run folder or a {CHECKPOINTS}/step-N folder")
        weights, p = p, p.parent
    if (p / CONFIG).is_file():
        run = Run(p)
        return run, weights or run.weights()
    if p.parent.name == CHECKPOINTS and (p.parent.parent / CONFIG).is_file():
        if p.name.endswith(".tmp") or not (p / STATE).is_file():
            raise ResnetlabError(f"{p} is a half-written checkpoint; use a complete {CHECKPOINTS}/step-N "
                                 "folder or the run folder")
        return Run(p.parent.parent), weights or checkpoint_weights(p)
    raise ResnetlabError(f"{path} {NOT_A_RUN}")


def load_trained(path: str | Path, device: str = "cpu") -> tuple[nn.Module, RunRecord, Normalizer]:
    """The model of a run (eval mode, on `device`) as `find_run` resolves `path`, its record, and its
    normalisation."""
    run, weights = find_run(path)
    record = run.record()
    cfg = record.config
    model = create_model(cfg.model, num_classes=record.num_classes, in_channels=record.channels,
                         **cfg.model_options)
    load_weights_into(model, read_weights(weights), str(weights))
    pre = read_weights(run.preprocess_file)
    return model.to(device).eval(), record, Normalizer(pre["mean"], pre["std"])

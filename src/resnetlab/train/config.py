"""TrainConfig: everything a training run is asked to do (the model, the data, the recipe, where
it goes). A run folder's config.json keeps it (`resnetlab.run.RunRecord`), so a run can be rebuilt
and resumed from its folder alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .recipe import Recipe, recipe_from_dict


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
    tensorboard: str = "auto"        # TensorBoard event files in the run folder: auto (when the
                                     # tensorboard package is installed) | on | off

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


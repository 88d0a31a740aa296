"""Training recipes: small dataclasses with names. Any field can be overridden (each is a CLI flag).

Schedule milestones are fractions of the run, so the paper's "lr/10 at 32k and 48k of 64k
iterations" is milestones=(0.5, 0.75) with iterations=64000 and scales with any other length.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..data.augment import NORMALIZATIONS
from ..data.loader import AUGMENTS, EVAL_VIEWS
from ..errors import ResnetlabError

# Precisions a run can ask for ("auto": the engine probes fp32 / bf16 / fp16). fp64 is never probed:
# it is reference arithmetic for checks that must hold on any CPU (1 vs N processes agree to ~1e-12
# in fp64 whatever the vector width, where fp32's rounding differs from one CPU to the next).
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")
SCHEDULES = ("step", "onecycle", "cosine", "constant", "plateau")
SWITCHES = ("auto", "on", "off")   # engine switches: "auto" lets the probe decide


def _field(default, help: str, choices: tuple[str, ...] | None = None):
    # The metadata is what the command line is generated from (cli/flags.py): one flag per field.
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Recipe:
    """A training recipe. Every field but `name` is a flag of `train`/`finetune` (--batch-size for
    batch_size, ...), generated from the field's metadata: its help text and allowed values."""

    name: str = "custom"
    # optimiser (SGD with momentum; weight decay on every parameter, as in the paper, unless
    # bn_weight_decay says otherwise)
    batch_size: int = _field(128, "images per step (global, over all processes)")
    lr: float = _field(0.1, "peak learning rate")
    momentum: float = _field(0.9, "SGD momentum")
    nesterov: bool = _field(False, "Nesterov momentum")
    weight_decay: float = _field(1e-4, "L2 weight decay on every parameter (but see --bn-weight-decay)")
    bn_weight_decay: float | None = _field(None, "weight decay on BatchNorm weights and all biases "
                                           "(default: --weight-decay, as in the paper)")
    label_smoothing: float = _field(0.0, "label smoothing of the cross-entropy (0: none)")
    ema: float = _field(0.0, "exponential moving average of the weights, its decay per step (0: off); "
                        "evaluations and the saved weights use the average")
    lookahead: float = _field(0.0, "Lookahead as in airbench: every --lookahead-steps steps the weights "
                              "jump to a slow copy pulled toward them, with a decay of this value x "
                              "(step/steps)^3; the run ends on the slow copy (0: off; airbench: 0.774)")
    lookahead_steps: int = _field(5, "steps between Lookahead syncs")
    # learning-rate schedule
    schedule: str = _field("step", "learning-rate schedule", SCHEDULES)
    milestones: tuple[float, ...] = _field((0.5, 0.75), "step schedule: fractions of the run where "
                                           "lr *= gamma")
    gamma: float = _field(0.1, "step/plateau schedules: the factor at each decay")
    warmup: float = _field(0.0, "fraction of the run with a linear lr ramp up to --lr (not plateau)")
    final_lr: float = _field(0.0, "onecycle/cosine: the lr at the end, as a fraction of --lr")
    patience: int = _field(5, "plateau: evaluations without improvement before lr *= gamma")
    # the paper's warm-up for very deep nets: lr = warmup_lr until training error < warmup_until_error
    warmup_lr: float | None = _field(None, "the paper's warm-up for very deep nets: this lr until the "
                                     "training error falls below --warmup-until-error (default: none)")
    warmup_until_error: float = _field(0.8, "the paper's warm-up ends below this training error")
    warmup_min_depth: int = _field(110, "the paper's warm-up applies to nets of at least this depth")
    # length: iterations, or epochs when iterations is None
    iterations: int | None = _field(None, "run length in iterations (steps)")
    epochs: float | None = _field(10, "run length in epochs")
    # data
    augment: str = _field("pad-crop-flip", "training augmentation", AUGMENTS)
    pad: int = _field(4, "pixels of zero padding before the random crop")
    crop_size: int | None = _field(None, "training crop / evaluation size (default: the stored size)")
    pca_lighting: float = _field(0.0, "AlexNet-style PCA colour noise, its standard deviation (0: off)")
    normalize: str = _field("channel", "input normalisation (the paper's CIFAR recipe: pixel-mean)",
                            NORMALIZATIONS)
    val_split: int = _field(0, "training images held out for validation (paper: 5000)")
    eval_every: float = _field(1.0, "epochs between test-set evaluations")
    eval_view: str = _field("none", "evaluation view: none, center (resize 256/224 + centre crop), "
                            "ten-crop (corners, centre and flips, scores averaged) or flip (the image "
                            "and its mirror, scores averaged)", EVAL_VIEWS)
    eval_batch_size: int = _field(512, "images per evaluation batch")
    # engine: "auto" probes the machine; flags override
    precision: str = _field("auto", "arithmetic (auto: probe the machine; fp64: reference arithmetic, "
                            "slow)", ("auto", *PRECISIONS))
    channels_last: str = _field("auto", "channels-last memory format", SWITCHES)
    compile: str = _field("auto", "torch.compile the model", SWITCHES)
    notes: str = _field("", "free text kept with the recipe")

    def validate(self) -> Recipe:
        if (self.iterations is None) == (self.epochs is None):
            raise ResnetlabError("give the run length as iterations or epochs, exactly one of them")
        if (self.iterations is not None and self.iterations <= 0) or (self.epochs is not None
                                                                      and self.epochs <= 0):
            raise ResnetlabError("the run length must be positive")
        for name in ("lr", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                flag = name.replace("_", "-")
                raise ResnetlabError(f"--{flag} must be positive, got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ResnetlabError(f"--ema is a decay in [0, 1) (0: off), got {self.ema}")
        if not 0 <= self.lookahead < 1:
            raise ResnetlabError(f"--lookahead is a decay in [0, 1) (0: off), got {self.lookahead}")
        if self.lookahead_steps < 1:
            raise ResnetlabError(f"--lookahead-steps must be at least 1, got {self.lookahead_steps}")
        if self.bn_weight_decay is not None and self.bn_weight_decay < 0:
            raise ResnetlabError(f"--bn-weight-decay must be 0 or more, got {self.bn_weight_decay}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ResnetlabError(f"milestones are fractions of the run in (0, 1), got {self.milestones}")
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed:
                raise ResnetlabError(f"--{f.name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                     f"got {getattr(self, f.name)!r}")
        return self

    def total_steps(self, steps_per_epoch: int) -> int:
        if self.iterations is not None:
            return self.iterations
        return max(1, round(self.epochs * steps_per_epoch))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    # Section 4.2, exactly: batch 128, lr 0.1, momentum 0.9, wd 1e-4, lr/10 at 32k and 48k, stop at
    # 64k iterations; per-pixel mean; pad 4 + random 32x32 crop + flip; test on the original image.
    # For 110+ layers lr 0.01 until training error < 80%, then 0.1.
    "paper-cifar": Recipe(
        name="paper-cifar", batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="step",
        milestones=(0.5, 0.75), gamma=0.1, iterations=64000, epochs=None, warmup_lr=0.01,
        augment="pad-crop-flip", pad=4, normalize="pixel-mean",
        notes="He et al. 2015, Section 4.2 (CIFAR-10)"),
    # A departure from the paper, for budgets shorter than its 64k iterations (every `reproduce`
    # budget here): the same recipe with a linear warm-up over the first 10% of the run. Without it
    # a 56-layer net, residual or plain, spends its first few hundred iterations at lr 0.1 near
    # chance and ends a short run far behind the 20-layer one; with it the depths start alike
    # (the ablation in docs/RESULTS.md). The paper itself warms up only at 110+ layers (kept).
    "paper-cifar-warmup": Recipe(
        name="paper-cifar-warmup", batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
        schedule="step", milestones=(0.5, 0.75), gamma=0.1, warmup=0.1, iterations=64000, epochs=None,
        warmup_lr=0.01, augment="pad-crop-flip", pad=4, normalize="pixel-mean",
        notes="the paper's CIFAR recipe (Section 4.2) plus a linear lr warm-up over the first 10% of "
              "the run: a departure from the paper for short budgets (docs/RESULTS.md, issue 16)"),
    # Section 3.4: batch 256, lr 0.1 / 10 when the error plateaus, up to 600k iterations, wd 1e-4,
    # momentum 0.9; scale augmentation [256, 480] + 224 crop + flip, colour augmentation.
    "paper-imagenet": Recipe(
        name="paper-imagenet", batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4,
        schedule="plateau", patience=5, gamma=0.1, iterations=600000, epochs=None,
        augment="scale-crop-flip", crop_size=224, pca_lighting=0.1, normalize="channel",
        eval_view="center", eval_batch_size=128,
        notes="He et al. 2015, Section 3.4 (ImageNet); per-channel instead of per-pixel mean, "
              "since random crops at random scales make the two the same in expectation"),
    # Best time-to-accuracy found for small images on a CPU (see docs/RESULTS.md).
    "fast": Recipe(
        name="fast", batch_size=128, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
        label_smoothing=0.1, schedule="onecycle", warmup=0.15, final_lr=0.0, epochs=10,
        iterations=None, augment="flip", normalize="channel",
        notes="one-cycle SGD with Nesterov and label smoothing, flip-only augmentation; tuned for "
              "ResNet-20 on Fashion-MNIST within 10 minutes of a 2-core CPU (docs/RESULTS.md)"),
}


def get_recipe(name: str, **overrides) -> Recipe:
    """A copy of the named recipe with fields overridden; `epochs=` clears `iterations` and back."""
    if name not in RECIPES:
        raise ResnetlabError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "iterations" not in overrides:
        overrides["iterations"] = None
    if "iterations" in overrides and "epochs" not in overrides:
        overrides["epochs"] = None
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Recipe)}
    if unknown:
        raise ResnetlabError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
    if "milestones" in overrides:
        overrides["milestones"] = tuple(overrides["milestones"])
    return dataclasses.replace(RECIPES[name], **overrides).validate()


def recipe_from_dict(d: dict) -> Recipe:
    d = dict(d)
    d["milestones"] = tuple(d.get("milestones", ()))
    known = {f.name for f in dataclasses.fields(Recipe)}
    return Recipe(**{k: v for k, v in d.items() if k in known}).validate()


@dataclass
class Schedule:
    """The learning rate at each step: a pure function of (step, state), so resume is exact."""

    recipe: Recipe
    total_steps: int
    state: dict = field(default_factory=dict)   # "warm" (paper warm-up active), "scale" (plateau)

    def lr(self, step: int) -> float:
        r, t = self.recipe, step / self.total_steps
        if self.state.get("warm"):
            return r.warmup_lr
        if r.warmup and t < r.warmup and r.schedule != "plateau":
            return r.lr * (step + 1) / (r.warmup * self.total_steps)
        if r.schedule == "step":
            return r.lr * r.gamma ** sum(step >= round(m * self.total_steps) for m in r.milestones)
        if r.schedule == "constant":
            return r.lr
        if r.schedule == "plateau":
            return r.lr * self.state.get("scale", 1.0)
        frac = (t - r.warmup) / max(1e-12, 1 - r.warmup)
        end = r.final_lr * r.lr
        if r.schedule == "onecycle":     # linear up, then linear down to final_lr
            return end + (r.lr - end) * (1 - frac)
        return end + (r.lr - end) * 0.5 * (1 + math.cos(math.pi * frac))   # cosine

    def after_train_error(self, error: float) -> None:
        """The paper's warm-up ends once the training error falls below warmup_until_error."""
        if self.state.get("warm") and error < self.recipe.warmup_until_error:
            self.state["warm"] = False

    def after_eval(self, error: float) -> None:
        """"plateau": divide by 1/gamma after `patience` evaluations without a new best."""
        if self.recipe.schedule != "plateau":
            return
        best = self.state.get("best", float("inf"))
        if error < best - 1e-4:
            self.state.update(best=error, waited=0)
        else:
            self.state["waited"] = self.state.get("waited", 0) + 1
            if self.state["waited"] >= self.recipe.patience:
                self.state.update(scale=self.state.get("scale", 1.0) * self.recipe.gamma, waited=0)

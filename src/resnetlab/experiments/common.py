"""What every experiment shares: budgets, training (or reusing) a set of runs, result files.

Each model of an experiment is one ordinary run folder `OUT/runs/NAME/`. A run whose saved config
matches is reused when finished and resumed when not, so a killed `resnetlab reproduce` continues
where it stopped, and experiments pointed at the same OUT share their models (the depth table
reuses the degradation runs, the response analysis their weights).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.open import open_data
from ..data.splits import DataSplits
from ..errors import ResnetlabError
from ..models import count_params, create_model
from ..run import Run
from ..stats import Difference, Summary, compare, summarize
from ..train.checkpoint import write_json
from ..train.loop import TrainConfig, finish_run
from ..train.metrics import read_metrics
from ..train.recipe import Recipe, get_recipe

# Budgets: lengths a 2-core CPU can afford, all far shorter than the paper's 64k iterations (about
# 164 epochs of CIFAR-10), so experiments train with `paper-cifar-warmup` by default: the paper's
# recipe (SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr/10 at 50% and 75%, per-pixel mean,
# pad-crop-flip) plus a linear warm-up over the first 10% (`--recipe paper-cifar`: exactly the paper's).
#   quick: the demo: plain/ResNet 20 and 56 on Fashion-MNIST, 3 seeds, 120 iterations, only the
#          final evaluation, training error on 2,000 un-augmented images (under 20 minutes on the
#          slowest 2-core CPU met, docs/RESULTS.md);
#   full:  10 epochs, an evaluation per epoch, 3 seeds (`--epochs` asks for any other length).
BUDGETS = {
    "quick": dict(iterations=120, eval_every=0.5),
    "full": dict(epochs=10, eval_every=1.0),
}
BUDGET_SEEDS = {"quick": 3, "full": 3}           # seeds per model when --seeds is not given
BUDGET_SAMPLE = {"quick": 2000, "full": 10000}   # --train-eval-sample when not given


@dataclass
class ExperimentSpec:
    """Everything an experiment needs to know about how to train; the same for all its models."""

    data: str
    out: Path
    budget: str = "quick"
    recipe: str = "paper-cifar-warmup"
    epochs: float | None = None
    iterations: int | None = None
    data_dir: str | None = None
    seeds: tuple[int, ...] = (0,)   # one run folder per seed: OUT/runs/NAME/seed-S
    device: str = "auto"
    engine: dict = field(default_factory=dict)   # precision / channels_last / compile overrides
    train_subset: int | None = None
    train_eval_sample: int = 10000   # un-augmented training images evaluated with the test set
    jobs: int = 1                    # runs of one model (its seeds) trained at the same time
    progress: bool = True

    @property
    def data_label(self) -> str:
        """The data set's name for titles: a path is shortened to its last part."""
        return Path(self.data).name if "/" in self.data else self.data

    def recipe_for(self, **extra) -> Recipe:
        """The experiment's recipe at its budget; `extra` overrides fields for one run."""
        if self.budget not in BUDGETS:
            raise ResnetlabError(f"unknown budget {self.budget!r}; choose from {', '.join(BUDGETS)}")
        overrides = dict(BUDGETS[self.budget])
        if self.epochs is not None or self.iterations is not None:
            overrides.pop("epochs", None)
            overrides.pop("iterations", None)
            overrides.update(epochs=self.epochs, iterations=self.iterations)
        if "iterations" in extra or "epochs" in extra:   # a run's own length replaces the budget's
            overrides.update(epochs=None, iterations=None)
        overrides.update(extra)
        overrides.update(self.engine)   # the user's engine flags win
        return get_recipe(self.recipe, **overrides)


def run_name(model: str, options: dict) -> str:
    return model + "".join(f"-{k}{v}" for k, v in sorted(options.items()))


def seed_dir(spec: ExperimentSpec, name: str, seed: int) -> Path:
    """The run folder of one model and seed: OUT/runs/NAME/seed-S."""
    return spec.out / "runs" / name / f"seed-{seed}"


def train_or_reuse(spec: ExperimentSpec, model: str, options: dict | None = None,
                   data: DataSplits | None = None, name: str | None = None, recipe: Recipe | None = None,
                   seed: int | None = None, **fields) -> Path:
    """Train `model` with one seed (default: the first of the experiment's) into
    OUT/runs/NAME/seed-S, or reuse/resume what is there if its config matches. `recipe` replaces
    the experiment's; `fields` set other TrainConfig fields (init_from, freeze, classes, ...)."""
    options = options or {}
    recipe = recipe or spec.recipe_for()
    seed = spec.seeds[0] if seed is None else seed
    out = seed_dir(spec, name or run_name(model, options), seed)
    cfg = TrainConfig(model=model, data=spec.data, out=str(out), recipe=recipe, model_options=options,
                      data_dir=spec.data_dir, seed=seed, device=spec.device,
                      train_subset=spec.train_subset, train_eval_sample=spec.train_eval_sample, **fields)
    finish_run(cfg, data=data, progress=spec.progress, also=("train_eval_sample", *fields))
    return out


def train_seeds(spec: ExperimentSpec, model: str, options: dict | None = None,
                data: DataSplits | None = None, name: str | None = None, recipe: Recipe | None = None,
                **fields) -> Seeds:
    """`model` trained (or reused) once per seed of the experiment; their curves. With spec.jobs > 1
    the unfinished seeds train that many at a time, each process with its share of the threads."""
    name = name or run_name(model, options or {})
    if spec.jobs > 1:
        _train_in_parallel(spec, model, options, name, recipe, fields)
    return Seeds(name, [read_curves(train_or_reuse(spec, model, options, data, name, recipe, seed, **fields),
                                    name) for seed in spec.seeds])


def _train_in_parallel(spec: ExperimentSpec, model: str, options: dict | None, name: str,
                       recipe: Recipe | None, fields: dict) -> None:
    # Why: on 2 cores a small net's step does not keep two threads busy (small convolutions, Python
    # per step); two runs of one thread each do more steps per second between them (measured in
    # docs/RESULTS.md). A run records its thread count, so resuming it keeps its arithmetic.
    todo = [s for s in spec.seeds if not Run(seed_dir(spec, name, s)).finished()]
    jobs = min(spec.jobs, len(todo))
    # Full rounds only: a run left over would train alone on 1/N of the threads, slower than with
    # all of them, so it is left to the caller's loop (this process, every thread).
    todo = todo[:len(todo) - len(todo) % jobs] if jobs > 1 else []
    if not todo:
        return
    threads = max(1, torch.get_num_threads() // jobs)
    print(f"training {name}, seeds {', '.join(map(str, todo))}: {jobs} at a time, {threads} thread"
          f"{'s' if threads > 1 else ''} each", file=sys.stderr, flush=True)
    quiet = dataclasses.replace(spec, progress=False)   # two progress bars would garble each other
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        runs = [pool.submit(_train_one, quiet, model, options, name, recipe, seed, threads, fields)
                for seed in todo]
        for run in runs:
            run.result()   # a failed run's error, raised here


def _train_one(spec: ExperimentSpec, model: str, options: dict | None, name: str, recipe: Recipe | None,
               seed: int, threads: int, fields: dict) -> None:
    torch.set_num_threads(threads)
    train_or_reuse(spec, model, options, None, name, recipe, seed, **fields)


def load_data(spec: ExperimentSpec) -> DataSplits:
    return open_data(spec.data, data_dir=spec.data_dir)


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def is_cifar10(data: DataSplits) -> bool:
    """The paper's data set, whatever its files: the official batches, or a folder/archive of its
    images (e.g. the JPEG copy), recognised by its ten class names."""
    return data.name == "cifar10" or tuple(sorted(data.classes)) == CIFAR10_CLASSES


@dataclass
class RunCurves:
    """A finished run's learning curves and end numbers, read back from its folder."""

    name: str
    run_dir: Path
    steps: list[int]
    train_error: list[float]
    eval_steps: list[int]
    test_error: list[float]
    params: int
    summary: dict
    seed: int = 0

    @property
    def final_test_error(self) -> float:
        return self.test_error[-1]

    @property
    def best_test_error(self) -> float:
        return min(self.test_error)

    sample_error: list[float] = field(default_factory=list)   # un-augmented training sample, at eval_steps

    @property
    def final_running_train_error(self) -> float:
        """The running error on augmented batches, averaged over the last 10% of steps (windows are
        noisy)."""
        last = self.steps[-1]
        tail = [e for s, e in zip(self.steps, self.train_error, strict=True) if s >= 0.9 * last]
        return sum(tail) / len(tail)

    @property
    def final_train_error(self) -> float:
        """Training error at the end: on the fixed un-augmented training sample when the run measured
        one (what the paper's curves mean), else the running error on augmented batches."""
        return self.sample_error[-1] if self.sample_error else self.final_running_train_error

    @property
    def train_error_kind(self) -> str:
        return "un-augmented training sample" if self.sample_error else "running, augmented batches"


@dataclass
class Seeds:
    """One model's runs, one per seed (in the experiment's seed order)."""

    name: str
    runs: list[RunCurves]

    @property
    def params(self) -> int:
        return self.runs[0].params

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def values(self, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.runs]

    def summary(self, attr: str) -> Summary:
        return summarize(self.values(attr))

    def to_dict(self, **extra) -> dict:
        """results.json's entry: mean/std/values of the end numbers, every seed's run folder."""
        d = {"params": self.params, "seeds": self.seeds, **extra,
             "train_error_kind": self.runs[0].train_error_kind}
        for attr in ("final_train_error", "final_running_train_error", "final_test_error", "best_test_error"):
            d[attr] = self.summary(attr).to_dict()
        d["steps"] = self.runs[0].steps[-1]
        d["run_dirs"] = [str(r.run_dir) for r in self.runs]
        return d


def read_curves(run_dir: Path, name: str | None = None) -> RunCurves:
    run = Run(run_dir)
    records = read_metrics(run.metrics_file)
    record = run.record()
    cfg = record.config
    with torch.device("meta"):
        params = count_params(create_model(cfg.model, num_classes=record.num_classes,
                                           in_channels=record.channels, **cfg.model_options))
    trains = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    summary = run.summary() or {}
    sample = [r["train_sample_top1_error"] for r in evals if "train_sample_top1_error" in r]
    return RunCurves(name or run_dir.name, run_dir, [r["step"] for r in trains],
                     [r["train_error"] for r in trains], [r["step"] for r in evals],
                     [r["test_top1_error"] for r in evals], params, summary,
                     cfg.seed, sample if len(sample) == len(evals) else [])


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def label(name: str) -> str:
    """A run's name as the paper writes it: resnet56 -> ResNet-56, plain20 -> plain-20."""
    for prefix, shown in (("resnet", "ResNet-"), ("plain", "plain-")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return shown + name[len(prefix):]
    return name


def versus(a: Seeds, b: Seeds, attr: str, what: str) -> tuple[str, Difference]:
    """stats.compare of two models' `attr` over their seeds (paired: the same seeds)."""
    return compare(label(a.name), a.values(attr), label(b.name), b.values(attr), what)


def seeds_note(spec: ExperimentSpec, kind: str | None, what: str = "Errors") -> str:
    """The line under every table: how many seeds, what ± means, what "training error" (`kind`)
    is."""
    n = len(spec.seeds)
    spread = (f"mean ± std over {n} seeds ({', '.join(map(str, spec.seeds))}; a seed sets the "
              "initialisation and the data order), every seed's value in results.json"
              if n > 1 else f"one seed ({spec.seeds[0]}): no spread, so no comparison is resolved; "
              "ask for more with --seeds N")
    return f"{what}: {spread}." + (f" Training error: {kind}." if kind else "")


def command_line() -> str:
    return "resnetlab " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""


def write_results(spec: ExperimentSpec, name: str, results: dict, table_md: str, verdicts: list[str],
                  figures: list[str], started: float) -> dict:
    """Add this experiment to OUT/results.json (one key per experiment, so experiments can share
    an OUT folder) and write its Markdown table to OUT/NAME.md; returns this experiment's dict."""
    recipe = spec.recipe_for()
    full = {
        "experiment": name, "data": spec.data, "budget": spec.budget,
        "recipe": {k: v for k, v in dataclasses.asdict(recipe).items()
                   if k not in ("precision", "channels_last", "compile")},
        "seeds": list(spec.seeds), "command": command_line(), "verdicts": verdicts, "figures": figures,
        "wall_time_s": round(time.time() - started, 1), **results,
    }
    spec.out.mkdir(parents=True, exist_ok=True)
    path = spec.out / "results.json"
    try:
        merged = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        merged = {}
    merged[name] = full
    write_json(path, merged)
    length = f"{recipe.iterations} iterations" if recipe.iterations else f"{recipe.epochs:g} epochs"
    md = [f"# {name}: {spec.data_label}, budget {spec.budget}", "", f"Command: `{full['command']}`", "",
          f"Recipe: `{recipe.name}`, {length}, batch {recipe.batch_size}: {recipe.notes}", "", table_md, "",
          "## Verdict", ""] + [f"- {v}" for v in verdicts] + [""]
    md += [f"![{f}]({f})" for f in figures] + [""]
    (spec.out / f"{name}.md").write_text("\n".join(md))
    return full

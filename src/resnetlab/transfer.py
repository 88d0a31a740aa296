"""Fine-tuning: start from pretrained weights, replace the classifier, optionally freeze.

Sources (`load_source`):
  * a resnetlab run folder or one of its checkpoints/step-N folders;
  * a torchvision-format state-dict file (`.pth`/`.pt`), loaded with `weights_only=True` (a pickle
    that is not plain tensors is refused, never executed); the architecture is read off the keys;
  * `torchvision:NAME` (e.g. torchvision:resnet50): torchvision's weights API, from torch's cache
    (~/.cache/torch/hub/checkpoints) or downloaded when online; offline, an error naming the file;
  * a CIFAR checkpoint of akamaster/pytorch_resnet_cifar10 (`.th`: {'state_dict': {'module.conv1...',
    'module.linear...'}}), mapped onto resnet20/32/44/56/110 (their option A shortcut pads channels
    exactly as resnetlab's does).

The classifier (`fc`) is always replaced for the new classes. When the new data has a different
number of channels than the source, the first convolution is adapted: 3 -> 1 sums the filters
over the colour channels (a grayscale image x gives the response the RGB filters would give to the
colour image (x, x, x)); 1 -> 3 spreads each filter as w/3 over the three channels.
Freezing (`freeze`): "none", "backbone" (all but the classifier), or "stages:N" (the stem and the
first N stages). Frozen parameters stop learning and frozen BatchNorm layers stay in eval mode, so
their running statistics are used and never updated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import ResnetlabError
from .run import Run, RunRecord, find_run
from .train.checkpoint import read_weights
from .train.config import TrainConfig


@dataclass
class Source:
    model: str                        # registry name the weights fit
    state: dict[str, torch.Tensor]
    description: str
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Reading a source


def load_source(spec: str, model: str | None = None) -> Source:
    """The weights named by `spec` (see the module docstring), and the model they fit."""
    if spec.startswith("torchvision:"):
        return _from_torchvision(spec.split(":", 1)[1], model)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_run(path)
    if not path.is_file():
        raise ResnetlabError(f"--from {spec}: no such run folder, checkpoint or weights file; give a "
                             "run folder, a .pth/.th/.safetensors file or torchvision:NAME")
    if path.suffix == ".safetensors":
        state = read_weights(path)
    else:
        state = load_state_file(path)
    state = _normalise_keys(state)
    name, options = (model, {}) if model else infer_architecture(state, str(path))
    return Source(name, state, f"{path.name} ({name})", options)


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a PyTorch file, unpickled with weights_only=True (tensors and plain
    containers only: a pickle carrying code is refused before anything runs)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file makes torch.load raise anything (found by fuzzing)
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ResnetlabError(f"{path} is not a plain PyTorch state dict ({first}); resnetlab loads "
                             "weights with weights_only=True and refuses anything else") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ResnetlabError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return obj


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel's `module.` prefix off; akamaster's `linear` head named `fc` as here."""
    out = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        k = re.sub(r"^linear\.", "fc.", k)
        out[k] = v
    return out


def infer_architecture(state: dict[str, torch.Tensor], where: str) -> tuple[str, dict]:
    """The registry name (and shortcut option) of a ResNet state dict, read off its keys."""
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise ResnetlabError(f"{where}: not a ResNet state dict (no conv1/fc weights); pass --model NAME")
    blocks = {}
    for k in state:
        m = re.match(r"layer(\d)\.(\d+)\.", k)
        if m:
            stage, idx = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), idx + 1)
    bottleneck = "layer1.0.conv3.weight" in state
    layers = tuple(blocks[s] for s in sorted(blocks))
    projections = sum(1 for k in state if k.endswith("downsample.0.weight"))
    if state["conv1.weight"].shape[-1] == 7 and len(layers) == 4:
        from .models.resnet import IMAGENET_DEPTHS
        for depth, (block, spec) in IMAGENET_DEPTHS.items():
            if spec == layers and (block.__name__ == "Bottleneck") == bottleneck:
                shortcut = "C" if projections == sum(layers) else ("B" if projections else "A")
                return f"resnet{depth}", ({} if shortcut == "B" else {"shortcut": shortcut})
    if state["conv1.weight"].shape[-1] == 3 and len(layers) == 3 and len(set(layers)) == 1:
        depth = 6 * layers[0] + 2
        name = f"resnet{depth}" if depth not in (50, 152) else f"cifar_resnet{depth}"
        shortcut = "C" if projections == sum(layers) else ("B" if projections else "A")
        return name, ({} if shortcut == "A" else {"shortcut": shortcut})
    raise ResnetlabError(f"{where}: could not tell which ResNet these weights are for "
                         f"(stages {layers}); pass --model NAME")


def _from_run(path: Path) -> Source:
    run, weights = find_run(path)   # a run folder (final or latest weights) or a checkpoint
    cfg = run.record().config
    return Source(cfg.model, read_weights(weights), f"run {run.root} ({cfg.model} on {cfg.data})",
                  dict(cfg.model_options))


def _from_torchvision(name: str, model: str | None) -> Source:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ResnetlabError(f"torchvision has no pretrained weights named {name!r}") from None
    filename = Path(weights.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except Exception as e:  # urllib/http/hash errors: one message, with the way out
        raise ResnetlabError(
            f"torchvision:{name} weights are not cached and could not be downloaded ({type(e).__name__}); "
            f"download {weights.url} on a machine with internet and pass --from /path/to/{filename} "
            f"(or put it at {cached})") from None
    return Source(model or name, _normalise_keys(state), f"torchvision {name} ({weights})")


# ---------------------------------------------------------------------------------------------------
# Putting the weights into the new model


def classifier_heads(model: nn.Module) -> list[str]:
    """Names of the Linear layers that output the logits (`fc`; VGG's `classifier.6`; GoogLeNet's
    main and auxiliary heads): the last Linear's width picks them out."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return []
    width = linears[-1][1].out_features
    return [n for n, m in linears if m.out_features == width]


def _in_heads(key: str, heads: list[str]) -> bool:
    return any(key.startswith(h + ".") for h in heads)


def initialize(model: nn.Module, source: Source) -> str:
    """Load `source` into `model` except the classifier, adapting the first conv's channels.
    Every other tensor must fit exactly; returns a one-line report."""
    own = model.state_dict()
    heads = classifier_heads(model)
    state = {k: v for k, v in source.state.items() if not _in_heads(k, heads)}
    w = state.get("conv1.weight")
    target = own.get("conv1.weight")
    if w is not None and target is not None and w.shape[1] != target.shape[1]:
        state["conv1.weight"] = adapt_input_channels(w, target.shape[1])
    missing = [k for k in own if k not in state and not _in_heads(k, heads)]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}" if unexpected
                  else f"shape of {wrong[0]}: {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
        raise ResnetlabError(f"{source.description} does not fit the model ({detail}); "
                             "pass --model with the architecture the weights were trained as")
    for k in own:
        if k.endswith("num_batches_tracked") and k not in state:   # old checkpoints lack them
            state[k] = own[k]
    model.load_state_dict({**state, **{k: own[k] for k in own if _in_heads(k, heads)}}, strict=True)
    return f"initialised from {source.description}: {len(state)} tensors, new classifier"


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """First-conv filters for another number of input channels (see the module docstring)."""
    have = weight.shape[1]
    if channels == 1:
        return weight.sum(1, keepdim=True)
    if have == 1:
        return weight.repeat(1, channels, 1, 1) / channels
    raise ResnetlabError(f"cannot adapt a first convolution with {have} input channels to {channels}")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode (running statistics used, never updated) whatever
    `.train()` is called with. Same parameters and buffers, so checkpoints are interchangeable."""

    def train(self, mode: bool = True):
        return super().train(False)


def freeze(model: nn.Module, spec: str = "none") -> list[str]:
    """Freeze part of `model` in place (see the module docstring); returns the frozen prefixes."""
    if spec == "none":
        return []
    stages = [n for n, _ in model.named_children() if re.fullmatch(r"layer\d+", n)]
    head = {h.split(".")[0] for h in classifier_heads(model)}
    if spec == "backbone":
        prefixes = [n for n, _ in model.named_children() if n not in head]
    elif m := re.fullmatch(r"stages:(\d+)", spec):
        k = int(m.group(1))
        if k > len(stages):
            raise ResnetlabError(f"--freeze {spec}: the model has only {len(stages)} stages")
        first = {n for n, _ in model.named_children()}
        stem = [n for n in first if not re.fullmatch(r"layer\d+", n) and n not in head
                and n not in ("avgpool",)]
        prefixes = stem + stages[:k]
    else:
        raise ResnetlabError(f"--freeze must be none, backbone or stages:N, got {spec!r}")
    for prefix in prefixes:
        module = model.get_submodule(prefix)
        for p in module.parameters():
            p.requires_grad_(False)
        _freeze_bn(module)
    model.train(model.training)
    return prefixes


def _freeze_bn(module: nn.Module) -> None:
    # Swapping the class keeps the module, its parameters and buffers as they are; only train() changes.
    for child in module.modules():
        if type(child) is nn.BatchNorm2d:
            child.__class__ = FrozenBatchNorm2d   # same layout; only train() differs


# ---------------------------------------------------------------------------------------------------
# Foreign weights as a run folder, so eval / predict / export / show work on them


def import_run(spec: str, out: str | Path, data: str, normalize: str = "imagenet",
               data_dir: str | None = None, model: str | None = None) -> Path:
    """Write a run folder around the weights `spec` (classifier included, as trained), with the
    class names and image size of `data` and the normalisation the weights expect (`imagenet`
    mean/std for torchvision's and akamaster's; `channel` computes it from the data)."""
    from .data.augment import Normalizer
    from .data.open import images_for_statistics, open_data
    from .models import create_model
    from .train.checkpoint import load_weights_into, save_weights
    from .train.engine import Engine
    from .train.recipe import get_recipe

    source = load_source(spec, model)
    out = Path(out)
    run = Run(out)
    if run.weights_file.exists():
        raise ResnetlabError(f"{out} already holds a run; choose another --out")
    splits = open_data(data, data_dir=data_dir)
    c = splits.train.shape[0]
    fc = source.state.get("fc.weight")
    num_classes = fc.shape[0] if fc is not None else len(splits.classes)
    if num_classes != len(splits.classes):
        raise ResnetlabError(f"{source.description} has {num_classes} outputs but {data} has "
                             f"{len(splits.classes)} classes; fine-tune it instead (resnetlab finetune)")
    net = create_model(source.model, num_classes=num_classes, in_channels=c, **source.options)
    state = dict(source.state)
    if state["conv1.weight"].shape[1] != c:
        state["conv1.weight"] = adapt_input_channels(state["conv1.weight"], c)
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            state.setdefault(k, v)
    load_weights_into(net, state, source.description)
    out.mkdir(parents=True, exist_ok=True)
    recipe = get_recipe("fast", normalize=normalize)
    cfg = TrainConfig(model=source.model, data=data, out=str(out), recipe=recipe,
                      model_options=source.options, data_dir=data_dir)
    normalizer = Normalizer.fit(images_for_statistics(splits.train), normalize)
    save_weights(run.preprocess_file, normalizer)
    save_weights(run.weights_file, net, {"model": source.model, "imported_from": spec})
    run.save_record(RunRecord(
        config=cfg, engine=Engine(device="cpu", precision="fp32"), classes=splits.classes,
        input_size=splits.train.shape, stored_size=splits.train.shape, num_classes=num_classes,
        data_source=splits.source, imported_from=spec, description=source.description))
    return out

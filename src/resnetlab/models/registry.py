"""One registry of model builders: a name is the model's only handle (as in timm).

    @register_model(family="cifar")
    def resnet20(**kw): ...

    create_model("resnet20", num_classes=10, in_channels=1)
    list_models()

CIFAR-family names exist for every depth 6n+2 (`resnet8`, `plain14`, ...), resolved on demand.
Where a depth is also an ImageNet depth (50, 152) the short name is the ImageNet net; the
CIFAR one is `cifar_resnet50` / `cifar_plain50`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ResnetlabError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str              # "imagenet", "cifar" or "classic"
    default_classes: int
    input_size: tuple[int, int, int]   # the native (C, H, W)


_MODELS: dict[str, ModelEntry] = {}
_CIFAR_NAME = re.compile(r"^(?:cifar_)?(resnet|plain)(\d+)$")


def register_model(fn: Callable | None = None, *, name: str | None = None, family: str = "imagenet",
                   default_classes: int = 1000, input_size: tuple[int, int, int] = (3, 224, 224)):
    """Decorator adding a builder to the registry under `name` (default: the function's name)."""

    def add(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = ModelEntry(key, f, family, default_classes, input_size)
        return f

    return add(fn) if fn is not None else add


def _cifar_entry(name: str) -> ModelEntry | None:
    m = _CIFAR_NAME.match(name)
    if not m:
        return None
    kind, depth = m.group(1), int(m.group(2))
    if depth < 8 or (depth - 2) % 6:
        return None
    from .cifar import cifar_net  # late import: cifar.py registers into this module

    def build(**kw):
        return cifar_net(depth, residual=kind == "resnet", **kw)

    return ModelEntry(name, build, "cifar", 10, (3, 32, 32))


def get_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, or a ResnetlabError that suggests close names."""
    _load_builtin()
    entry = _MODELS.get(name) or _cifar_entry(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ResnetlabError(
            f"unknown model {name!r}.{hint} `resnetlab models` lists every name; CIFAR nets exist "
            "for any depth 6n+2 (resnet8, plain14, ...).")
    return entry


def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
                 **options) -> nn.Module:
    """Build a registered model. `num_classes` and `in_channels` default to the model's own (1000 and
    3 for ImageNet nets, 10 and 3 for CIFAR nets, 1 channel for LeNet-5). `options` go to the builder
    (e.g. shortcut="A", stride_in_1x1=True, zero_init_residual=True); unknown options are an error,
    not silently ignored."""
    entry = get_entry(name)
    if num_classes is None:
        num_classes = entry.default_classes
    if in_channels is None:
        in_channels = entry.input_size[0]
    try:
        return entry.builder(num_classes=num_classes, in_channels=in_channels, **options)
    except TypeError as e:
        raise ResnetlabError(f"bad option for model {name!r}: {e}") from None
    except ValueError as e:
        raise ResnetlabError(f"model {name!r}: {e}") from None


def list_models(family: str | None = None, pattern: str | None = None) -> list[str]:
    """Registered names (the canonical CIFAR depths included), in registration order."""
    _load_builtin()
    names = [n for n, e in _MODELS.items() if family is None or e.family == family]
    if pattern:
        rx = re.compile(pattern.replace("*", ".*") + "$")
        names = [n for n in names if rx.match(n)]
    return names


def _load_builtin() -> None:
    # Importing the modules runs their @register_model decorators.
    from . import cifar, classic, resnet  # noqa: F401

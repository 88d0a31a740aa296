"""One registry of model builders: a name is the model's only handle (as in timm).

    @register_model(family="cifar")
    def resnet20(**kw): ...

    create_model("resnet20", num_classes=10, in_channels=1)
    list_models()

Every public name has its own decorated builder (`def resnet50`, `def vgg16_bn_small`, ...), so a
name can be grepped and imported. CIFAR-family names also exist for every other depth 6n+2
(`resnet8`, `plain14`, ...): cifar.py registers a resolver for them. Options are checked against
the builder before it runs: its named parameters plus the `options` it passes on to its class.
Where a depth is also an ImageNet depth (50, 152) the short name is the ImageNet net; the
CIFAR one is `cifar_resnet50` / `cifar_plain50`.
"""

from __future__ import annotations

import difflib
import inspect
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
    options: tuple[str, ...] = ()      # keyword options the builder takes besides the two above


_MODELS: dict[str, ModelEntry] = {}
_RESOLVERS: list[Callable[[str], ModelEntry | None]] = []
_BASE = ("num_classes", "in_channels")


def builder_options(builder: Callable, passed_on: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The options a builder accepts: its own named parameters and those it passes on (**kw)."""
    own = [p.name for p in inspect.signature(builder).parameters.values()
           if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in _BASE]
    return tuple(dict.fromkeys([*own, *passed_on]))


def register_model(fn: Callable | None = None, *, family: str = "imagenet", default_classes: int = 1000,
                   input_size: tuple[int, int, int] = (3, 224, 224), options: tuple[str, ...] = ()):
    """Decorator adding a builder to the registry under its function name. `options`: the keyword
    options a `**kw` builder passes on to its model class."""

    def add(f: Callable) -> Callable:
        if f.__name__ in _MODELS:
            raise ValueError(f"model {f.__name__!r} is registered twice")
        _MODELS[f.__name__] = ModelEntry(f.__name__, f, family, default_classes, input_size,
                                         builder_options(f, options))
        return f

    return add(fn) if fn is not None else add


def register_resolver(resolve: Callable[[str], ModelEntry | None]) -> None:
    """Add a function that makes an entry for names not registered one by one (or returns None)."""
    _RESOLVERS.append(resolve)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, or a ResnetlabError that suggests close names."""
    entry = _MODELS.get(name) or next(filter(None, (resolve(name) for resolve in _RESOLVERS)), None)
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
    unknown = [k for k in options if k not in entry.options]
    if unknown:
        takes = ", ".join(entry.options) or "none"
        raise ResnetlabError(f"model {name!r} has no option {', '.join(map(repr, unknown))} "
                             f"(its options: {takes})")
    # Errors raised inside a builder are not caught: a bad option *value* is a ResnetlabError raised
    # where it is checked, and anything else is a bug to see.
    return entry.builder(num_classes=num_classes, in_channels=in_channels, **options)


def list_models(family: str | None = None, pattern: str | None = None) -> list[str]:
    """Registered names (the canonical CIFAR depths included), in registration order."""
    names = [n for n, e in _MODELS.items() if family is None or e.family == family]
    if pattern:
        rx = re.compile(pattern.replace("*", ".*") + "$")
        names = [n for n in names if rx.match(n)]
    return names

"""CIFAR ResNets and plain nets of any depth 6n+2 (paper Section 4.2).

3x3 conv with 16 filters, then three stages of n basic blocks on 32, 16, 8 pixel maps with
16, 32, 64 filters (the first conv of stages 2 and 3 has stride 2), global average pool, fc.
Shortcuts default to option A (parameter-free), as in the paper. 28x28 inputs (Fashion-MNIST)
need no padding: the maps are 28, 14, 7 and the global pool absorbs the size.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import ResnetlabError
from .blocks import BasicBlock, conv3x3, init_weights, make_stage
from .registry import ModelEntry, builder_options, register_model, register_resolver

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)   # the depths of the paper's Table 6, registered by name
CIFAR_OPTIONS = ("shortcut", "zero_init_residual", "widths")
CIFAR_INPUT = (3, 32, 32)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A",
                 residual: bool = True, zero_init_residual: bool = False,
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ResnetlabError(f"CIFAR nets have depth 6n+2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        opts = dict(shortcut=shortcut, residual=residual)
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c = widths[0]
        self.layer1, c = make_stage(BasicBlock, c, widths[0], n, 1, **opts)
        self.layer2, c = make_stage(BasicBlock, c, widths[1], n, 2, **opts)
        self.layer3, c = make_stage(BasicBlock, c, widths[2], n, 2, **opts)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self, zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def cifar_net(depth: int, residual: bool = True, **kw) -> CifarResNet:
    return CifarResNet(depth, residual=residual, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet20(**kw) -> CifarResNet:
    """ResNet-20 for 32x32 CIFAR images."""
    return cifar_net(20, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain20(**kw) -> CifarResNet:
    """Plain-20 for 32x32 CIFAR images."""
    return cifar_net(20, False, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet32(**kw) -> CifarResNet:
    """ResNet-32 for 32x32 CIFAR images."""
    return cifar_net(32, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain32(**kw) -> CifarResNet:
    """Plain-32 for 32x32 CIFAR images."""
    return cifar_net(32, False, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet44(**kw) -> CifarResNet:
    """ResNet-44 for 32x32 CIFAR images."""
    return cifar_net(44, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain44(**kw) -> CifarResNet:
    """Plain-44 for 32x32 CIFAR images."""
    return cifar_net(44, False, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet56(**kw) -> CifarResNet:
    """ResNet-56 for 32x32 CIFAR images."""
    return cifar_net(56, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain56(**kw) -> CifarResNet:
    """Plain-56 for 32x32 CIFAR images."""
    return cifar_net(56, False, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet110(**kw) -> CifarResNet:
    """ResNet-110 for 32x32 CIFAR images."""
    return cifar_net(110, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain110(**kw) -> CifarResNet:
    """Plain-110 for 32x32 CIFAR images."""
    return cifar_net(110, False, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def resnet1202(**kw) -> CifarResNet:
    """ResNet-1202 for 32x32 CIFAR images."""
    return cifar_net(1202, True, **kw)


@register_model(family="cifar", default_classes=10, input_size=CIFAR_INPUT, options=CIFAR_OPTIONS)
def plain1202(**kw) -> CifarResNet:
    """Plain-1202 for 32x32 CIFAR images."""
    return cifar_net(1202, False, **kw)


_CIFAR_NAME = re.compile(r"^(?:cifar_)?(resnet|plain)(\d+)$")


def _resolve(name: str) -> ModelEntry | None:
    """Entries for the other depths 6n+2 (resnet8, plain14, ...) and for `cifar_resnet50`-style
    names, whose short form is an ImageNet net."""
    m = _CIFAR_NAME.match(name)
    if m is None:
        return None
    depth, residual = int(m[2]), m[1] == "resnet"
    if depth < 8 or (depth - 2) % 6:
        return None

    def build(**kw) -> CifarResNet:
        return cifar_net(depth, residual, **kw)

    title = "ResNet" if residual else "Plain"
    build.__doc__ = f"{title}-{depth} for 32x32 CIFAR images."
    return ModelEntry(name, build, "cifar", 10, CIFAR_INPUT, builder_options(build, CIFAR_OPTIONS))


register_resolver(_resolve)

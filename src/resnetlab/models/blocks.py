"""Residual blocks, the three shortcut options of the paper, and the plain (no-shortcut) switch.

Parameter names follow torchvision (conv1, bn1, ..., downsample.0, downsample.1) so torchvision
checkpoints load unchanged. A plain block is the same module with the addition removed: it has no
`downsample` and `residual=False`, nothing else differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ResnetlabError

SHORTCUTS = ("A", "B", "C")


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option A: identity with stride subsampling and zero-padded extra channels; no parameters.

    The new channels are split evenly before and after the old ones, as in the widely used
    CIFAR reference implementation (akamaster/pytorch_resnet_cifar10), so its checkpoints load.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels={self.pad}"


def make_shortcut(kind: str, cin: int, cout: int, stride: int, residual: bool) -> nn.Module | None:
    """The `downsample` module of a block, or None for a plain identity (or no shortcut at all).

    A: parameter-free padding where dimensions grow; B: 1x1 projection where they grow;
    C: 1x1 projection on every shortcut.
    """
    if kind not in SHORTCUTS:
        raise ResnetlabError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {kind!r}")
    if not residual:
        return None
    grows = stride != 1 or cin != cout
    if kind == "C" or (kind == "B" and grows):
        return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    if kind == "A" and grows:
        return PadShortcut(cin, cout, stride)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True):
        super().__init__()
        self.residual = residual
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(shortcut, inplanes, planes, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) (ResNet-50/101/152).

    `stride_in_1x1=True` strides the first 1x1 as the paper does; False strides the 3x3 as
    torchvision's "v1.5" does (what torchvision's pretrained weights were trained with).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, stride_in_1x1: bool = False):
        super().__init__()
        self.residual = residual
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        width = planes * self.expansion
        self.conv1 = conv1x1(inplanes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, width)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(shortcut, inplanes, width, stride, residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


def make_stage(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int,
               **block_options) -> tuple[nn.Sequential, int]:
    """One stage (`layerN`): the first block may downsample, the rest keep the shape."""
    layers = [block(inplanes, planes, stride, **block_options)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes, 1, **block_options) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He (Kaiming) normal for convolutions, BN to identity; optionally zero each block's last BN
    so every residual block starts as the identity (Goyal et al. 2017)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


def init_relu_net(model: nn.Module) -> None:
    """torchvision's VGG init: He normal (fan-out) for convs, as they feed ReLUs; N(0, 0.01) for fc
    layers; BN as the identity; zero biases. (AlexNet, VGG, GoogLeNet.)"""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
            nn.init.zeros_(m.bias)

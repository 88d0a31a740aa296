"""CIFAR ResNets and plain nets of any depth 6n+2 (paper Section 4.2).

3x3 conv with 16 filters, then three stages of n basic blocks on 32, 16, 8 pixel maps with
16, 32, 64 filters (the first conv of stages 2 and 3 has stride 2), global average pool, fc.
Shortcuts default to option A (parameter-free), as in the paper. 28x28 inputs (Fashion-MNIST)
need no padding: the maps are 28, 14, 7 and the global pool absorbs the size.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, conv3x3, init_weights, make_stage
from .registry import register_model

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A",
                 residual: bool = True, zero_init_residual: bool = False,
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR nets have depth 6n+2 (8, 14, 20, ...), got {depth}")
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


def _register(depth: int) -> None:
    for prefix, residual in (("resnet", True), ("plain", False)):
        def build(depth=depth, residual=residual, **kw):
            return cifar_net(depth, residual=residual, **kw)

        build.__doc__ = f"{'ResNet' if residual else 'Plain'}-{depth} for 32x32 CIFAR images."
        register_model(build, name=f"{prefix}{depth}", family="cifar", default_classes=10,
                       input_size=(3, 32, 32))


for _d in CIFAR_DEPTHS:
    _register(_d)

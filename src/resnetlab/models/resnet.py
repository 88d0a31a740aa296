"""ImageNet ResNets (paper Table 1) and their plain counterparts.

Layout and parameter names are torchvision's, so with shortcut "B" and the default stride
placement a torchvision `resnetXX().state_dict()` loads with strict=True and gives the same
logits. The default `stride_in_1x1=False` is torchvision's "v1.5" bottleneck (stride on the 3x3,
what all public ImageNet weights use); `stride_in_1x1=True` is the paper's original placement
(stride on the first 1x1), which gives the paper's FLOP counts. ResNet-18/34 are unaffected.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ResnetlabError
from .blocks import BasicBlock, Bottleneck, init_weights, make_stage
from .registry import register_model

IMAGENET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], num_classes: int = 1000,
                 in_channels: int = 3, shortcut: str = "B", residual: bool = True,
                 stride_in_1x1: bool = False, zero_init_residual: bool = False):
        super().__init__()
        opts = dict(shortcut=shortcut, residual=residual)
        if block is Bottleneck:   # a basic block has no 1x1 to put the stride on
            opts["stride_in_1x1"] = stride_in_1x1
        elif stride_in_1x1:
            raise ResnetlabError("stride_in_1x1 applies to bottleneck nets (ResNet-50/101/152) only")
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c = 64
        self.layer1, c = make_stage(block, c, 64, layers[0], 1, **opts)
        self.layer2, c = make_stage(block, c, 128, layers[1], 2, **opts)
        self.layer3, c = make_stage(block, c, 256, layers[2], 2, **opts)
        self.layer4, c = make_stage(block, c, 512, layers[3], 2, **opts)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self, zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def imagenet_net(depth: int, residual: bool = True, **kw) -> ResNet:
    block, layers = IMAGENET_DEPTHS[depth]
    return ResNet(block, layers, residual=residual, **kw)


# ResNet-18/34 have no bottleneck, so no stride placement to choose.
BASIC_OPTIONS = ("shortcut", "zero_init_residual")
BOTTLENECK_OPTIONS = (*BASIC_OPTIONS, "stride_in_1x1")


@register_model(options=BASIC_OPTIONS)
def resnet18(**kw) -> ResNet:
    """ResNet-18 for 224x224 ImageNet images."""
    return imagenet_net(18, True, **kw)


@register_model(options=BASIC_OPTIONS)
def plain18(**kw) -> ResNet:
    """Plain-18 for 224x224 ImageNet images."""
    return imagenet_net(18, False, **kw)


@register_model(options=BASIC_OPTIONS)
def resnet34(**kw) -> ResNet:
    """ResNet-34 for 224x224 ImageNet images."""
    return imagenet_net(34, True, **kw)


@register_model(options=BASIC_OPTIONS)
def plain34(**kw) -> ResNet:
    """Plain-34 for 224x224 ImageNet images."""
    return imagenet_net(34, False, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def resnet50(**kw) -> ResNet:
    """ResNet-50 for 224x224 ImageNet images."""
    return imagenet_net(50, True, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def plain50(**kw) -> ResNet:
    """Plain-50 for 224x224 ImageNet images."""
    return imagenet_net(50, False, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def resnet101(**kw) -> ResNet:
    """ResNet-101 for 224x224 ImageNet images."""
    return imagenet_net(101, True, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def plain101(**kw) -> ResNet:
    """Plain-101 for 224x224 ImageNet images."""
    return imagenet_net(101, False, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def resnet152(**kw) -> ResNet:
    """ResNet-152 for 224x224 ImageNet images."""
    return imagenet_net(152, True, **kw)


@register_model(options=BOTTLENECK_OPTIONS)
def plain152(**kw) -> ResNet:
    """Plain-152 for 224x224 ImageNet images."""
    return imagenet_net(152, False, **kw)

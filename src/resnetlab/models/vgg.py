"""VGG (Simonyan & Zisserman 2014), configs A, B, D, E, with and without BatchNorm, and their
small-input twins; the plain nets the ResNet paper's plain baselines follow (Section 3.3)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import init_relu_net
from .registry import register_model

SMALL_INPUT = (3, 32, 32)  # the native size of every *_small twin
VGG_OPTIONS = ("dropout",)

VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG (Simonyan & Zisserman 2014): 3x3 convs (stride 1, pad 1) and 2x2 max pools, then
    fc 4096 -> fc 4096 -> fc classes with dropout 0.5 after the first two.

    torchvision's layout and parameter names (`features`, `avgpool` = adaptive average pool to 7x7,
    the identity at 224, and `classifier`), so a torchvision vgg / vgg_bn state dict loads with
    strict=True. VGG-16: 138,357,544 parameters, VGG-19: 143,667,240 (1000 classes). `batch_norm`
    adds BN after every conv (not in the paper; torchvision's *_bn). Init as torchvision; the paper
    trained config A from N(0, 0.01) and initialised the deeper nets from it.

    `small_input=True` (`vgg16_small`, ...; the usual CIFAR port): the same conv stack, whose five
    pools take 32 px to 1x1; the pools round up (ceil mode) so 28 px also ends at 1x1 (14, 7, 4, 2, 1)
    instead of failing at the fifth pool; classifier 512 -> 512 -> 512 -> classes, so "16 weight
    layers" still holds.
    """

    def __init__(self, config: list[int | str], batch_norm: bool = False, num_classes: int = 1000,
                 in_channels: int = 3, small_input: bool = False, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=small_input))
            else:
                layers.append(nn.Conv2d(c, int(v), 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(int(v)))
                layers.append(nn.ReLU(inplace=True))
                c = int(v)
        self.features = nn.Sequential(*layers)
        side, hidden = (1, 512) if small_input else (7, 4096)
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Linear(c * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_relu_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))



@register_model(family="classic", options=VGG_OPTIONS)
def vgg11(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-11, 224x224."""
    return VGG(VGG_CONFIGS[11], False, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg13(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-13, 224x224."""
    return VGG(VGG_CONFIGS[13], False, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg16(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-16, 224x224."""
    return VGG(VGG_CONFIGS[16], False, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg19(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-19, 224x224."""
    return VGG(VGG_CONFIGS[19], False, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-11 with BatchNorm, 224x224."""
    return VGG(VGG_CONFIGS[11], True, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-13 with BatchNorm, 224x224."""
    return VGG(VGG_CONFIGS[13], True, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-16 with BatchNorm, 224x224."""
    return VGG(VGG_CONFIGS[16], True, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", options=VGG_OPTIONS)
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
    """VGG-19 with BatchNorm, 224x224."""
    return VGG(VGG_CONFIGS[19], True, num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg11_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-11, 28-32 px images."""
    return VGG(VGG_CONFIGS[11], False, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg13_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-13, 28-32 px images."""
    return VGG(VGG_CONFIGS[13], False, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg16_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-16, 28-32 px images."""
    return VGG(VGG_CONFIGS[16], False, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg19_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-19, 28-32 px images."""
    return VGG(VGG_CONFIGS[19], False, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg11_bn_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-11 with BatchNorm, 28-32 px images."""
    return VGG(VGG_CONFIGS[11], True, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg13_bn_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-13 with BatchNorm, 28-32 px images."""
    return VGG(VGG_CONFIGS[13], True, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg16_bn_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-16 with BatchNorm, 28-32 px images."""
    return VGG(VGG_CONFIGS[16], True, num_classes, in_channels, small_input=True, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=VGG_OPTIONS)
def vgg19_bn_small(num_classes: int = 10, in_channels: int = 3, **kw) -> VGG:
    """VGG-19 with BatchNorm, 28-32 px images."""
    return VGG(VGG_CONFIGS[19], True, num_classes, in_channels, small_input=True, **kw)

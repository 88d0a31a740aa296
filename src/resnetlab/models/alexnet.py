"""AlexNet (Krizhevsky et al. 2012), single tower, and its small-input twin: one of the nets the
ResNet paper is measured against."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import init_relu_net
from .registry import register_model

SMALL_INPUT = (3, 32, 32)  # the native size of every *_small twin


def _lrn() -> nn.LocalResponseNorm:
    # Paper: b = a / (k + alpha * sum of a^2 over n=5 maps)^beta with k=2, alpha=1e-4, beta=0.75.
    # PyTorch (like Caffe) divides alpha by n, so the paper's alpha is 5 * 1e-4 here.
    return nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012) as published, with the two GPU towers merged into one.

    conv1 11x11/4 (96) on 227x227 -> ReLU -> LRN -> max pool 3/2 -> conv2 5x5 (256) -> ReLU -> LRN
    -> max pool -> conv3 3x3 (384) -> conv4 3x3 (384) -> conv5 3x3 (256) -> max pool -> fc 4096 ->
    dropout -> fc 4096 -> dropout -> fc classes. Maps: 55, 27, 13, 13, 13, 6. 62,378,344 parameters
    for 1000 classes (conv2/4/5 see all channels of the layer below; in the two-GPU original they
    were grouped in two, which gives 60,965,224).

    Where torchvision's `alexnet` differs: it is the "one weird trick" (Krizhevsky 2014) variant with
    64/192/384/256/256 filters, conv1 padded by 2 on 224x224 inputs, no LRN, dropout before (not
    after) fc6 and fc7, and 61,100,840 parameters. Same here as there: `avgpool`, an adaptive
    average pool to 6x6, which is the identity at 227 and lets 224x224 crops (54 -> 5x5 maps) work.
    The LRN alpha is rescaled to the paper's formula (see `_lrn`).

    Init: He normal convs and N(0, 0.01) fc layers, zero biases (torchvision's VGG scheme; its
    alexnet keeps PyTorch's defaults); the paper drew every weight from N(0, 0.01) and set the biases
    of conv2, conv4, conv5 and the hidden fc layers to 1, so that their ReLUs start with positive input.

    `small_input=True` (`alexnet_small`, 28-32 px): conv1 is 5x5 stride 1 (pad 2) and the three max
    pools pad by 1, so both 32 and 28 px inputs give 16/14, 8/7 and 4x4 maps; same filter counts and
    LRN; the classifier is 256x4x4 -> 1024 -> 1024 -> classes (4096-wide fc layers would hold 33M
    parameters for ten classes).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        if small_input:
            conv1 = nn.Conv2d(in_channels, 96, 5, padding=2)
            pool_padding, side, hidden = 1, 4, 1024
        else:
            conv1 = nn.Conv2d(in_channels, 96, 11, stride=4)
            pool_padding, side, hidden = 0, 6, 4096

        def pool() -> nn.MaxPool2d:  # overlapping pooling, 3x3 windows at stride 2
            return nn.MaxPool2d(3, stride=2, padding=pool_padding)

        self.features = nn.Sequential(
            conv1, nn.ReLU(inplace=True), _lrn(), pool(),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), _lrn(), pool(),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), pool(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(side)
        self.classifier = nn.Sequential(
            nn.Linear(256 * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_relu_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))



@register_model(family="classic", input_size=(3, 227, 227), options=("dropout",))
def alexnet(num_classes: int = 1000, in_channels: int = 3, **kw) -> AlexNet:
    """AlexNet as published (single tower, LRN), 227x227."""
    return AlexNet(num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=("dropout",))
def alexnet_small(num_classes: int = 10, in_channels: int = 3, **kw) -> AlexNet:
    """AlexNet for 28-32 px images: 5x5 stride-1 conv1, padded pools, 1024-wide fc layers."""
    return AlexNet(num_classes, in_channels, small_input=True, **kw)

"""GoogLeNet (Szegedy et al. 2014, Inception v1), and its small-input twin.

In training mode the net returns `GoogLeNetOutputs(logits, aux_logits2, aux_logits1)` (torchvision's
namedtuple), in eval mode the logits tensor only; its `training_loss` method says how to train on that
(resnetlab.models.loss_and_logits calls it), so training code needs no GoogLeNet case.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import init_relu_net
from .registry import register_model

SMALL_INPUT = (3, 32, 32)  # the native size of every *_small twin


GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
AUX_WEIGHT = 0.3  # the paper: each auxiliary loss is added to the total with weight 0.3


class BasicConv2d(nn.Module):
    """conv (no bias) -> BN -> ReLU, torchvision's unit (the original: conv with bias -> ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, **conv_options):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1x1; 1x1 reduce -> 3x3; 1x1 reduce ->
    5x5; 3x3 max pool (stride 1) -> 1x1 projection. The 1x1 reductions keep the big filters cheap."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, kernel5: int = 5):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=kernel5,
                                                 padding=kernel5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on 4a / 4d: average pool to 4x4 -> 1x1 conv (128) -> fc 1024 -> dropout
    0.7 -> fc classes. The paper pools 5x5 at stride 3 (14x14 -> 4x4); the adaptive pool
    (torchvision's) gives 4x4 from any map size, 16x16 or 14x14 in the small-input net included."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.avgpool(x)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


# (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj): the paper's Table 1.
INCEPTION_CONFIGS = {
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128), "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1 (Szegedy et al. 2014), in torchvision's layout and parameter names.

    Stem conv 7x7/2 (64) -> max pool -> conv 1x1 (64) -> conv 3x3 (192) -> max pool (224 -> 28),
    inception 3a 3b -> max pool -> 4a..4e -> max pool -> 5a 5b (7x7) -> global average pool ->
    dropout 0.4 -> fc. Max pools are 3x3/2, rounding up (Caffe's ceil mode). Auxiliary heads on the
    outputs of 4a and 4d run in training mode only: forward then returns
    GoogLeNetOutputs(logits, aux_logits2, aux_logits1); train on `training_loss`, which weighs each
    auxiliary loss by 0.3 as published. In eval mode, or with aux_logits=False, forward returns the
    logits tensor. Parameters, 1000 classes: 7,005,832 without the auxiliary heads (the paper's
    Table 1 sums to about 6.8M), 13,385,816 with them.

    Where this differs from the paper, all as torchvision does: BatchNorm after every conv and no
    conv biases (the original has biases, no BN, and LRN after the first max pool and after conv3);
    the auxiliary heads' adaptive 4x4 pool (see InceptionAux). Init: He normal convs, N(0, 0.01)
    fc layers, as the other nets here (torchvision: truncated N(0, 0.01) everywhere; the original:
    Xavier); with BN after every conv the conv scale hardly matters.

    `torchvision_compat=True` reproduces torchvision's `googlenet` exactly, so its state dict (and
    pretrained weights, aux heads included) load with strict=True and give the same logits:
    a 3x3 instead of 5x5 conv in the "5x5" branch (torchvision's known bug, pytorch/vision#906),
    a 2x2/2 last max pool, dropout 0.2; 6,624,904 parameters without the auxiliary heads,
    13,004,888 with them. torchvision's `transform_input` (re-normalising for its weights) is not
    provided: normalise the input as the weights expect.

    `small_input=True` (`googlenet_small`, 28-32 px, as common CIFAR ports): conv1 is 3x3 stride 1
    and the stem's two max pools are dropped, so the inception stages see 32/16/8 px maps (28 px:
    28/14/7) instead of 28/14/7, the maps the published net has on 224 px; everything after the stem,
    auxiliary heads included, is unchanged. The price: about the published net's mult-adds per
    32 px image.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 small_input: bool = False, torchvision_compat: bool = False,
                 dropout: float | None = None, dropout_aux: float = 0.7):
        super().__init__()
        kernel5 = 3 if torchvision_compat else 5
        if dropout is None:
            dropout = 0.2 if torchvision_compat else 0.4
        if small_input:
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, padding=1)
            self.maxpool1: nn.Module = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, ceil_mode=True)

        def inception(key: str) -> Inception:
            return Inception(*INCEPTION_CONFIGS[key], kernel5=kernel5)

        self.inception3a = inception("3a")
        self.inception3b = inception("3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception("4a")
        self.inception4b = inception("4b")
        self.inception4c = inception("4c")
        self.inception4d = inception("4d")
        self.inception4e = inception("4e")
        self.maxpool4 = (nn.MaxPool2d(2, stride=2, ceil_mode=True) if torchvision_compat
                         else nn.MaxPool2d(3, stride=2, ceil_mode=True))
        self.inception5a = inception("5a")
        self.inception5b = inception("5b")
        self.aux1 = InceptionAux(512, num_classes, dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, dropout_aux) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        init_relu_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return GoogLeNetOutputs(x, aux2, aux1) if aux else x

    def training_loss(self, outputs: torch.Tensor | GoogLeNetOutputs, targets: torch.Tensor,
                      criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The published training loss and the logits to score: criterion(main) + 0.3 x (criterion(aux2)
        + criterion(aux1)) in training mode (the auxiliary heads are discarded at inference)."""
        if not isinstance(outputs, GoogLeNetOutputs):
            return criterion(outputs, targets), outputs
        loss = criterion(outputs.logits, targets)
        for aux in (outputs.aux_logits2, outputs.aux_logits1):
            if aux is not None:
                loss = loss + AUX_WEIGHT * criterion(aux, targets)
        return loss, outputs.logits


GOOGLENET_OPTIONS = ("aux_logits", "torchvision_compat", "dropout", "dropout_aux")


@register_model(family="classic", options=GOOGLENET_OPTIONS)
def googlenet(num_classes: int = 1000, in_channels: int = 3, **kw) -> GoogLeNet:
    """GoogLeNet (Inception v1), 224x224, auxiliary heads in training mode."""
    return GoogLeNet(num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT, options=GOOGLENET_OPTIONS)
def googlenet_small(num_classes: int = 10, in_channels: int = 3, **kw) -> GoogLeNet:
    """GoogLeNet for 28-32 px images: 3x3 stride-1 stem without its max pools."""
    return GoogLeNet(num_classes, in_channels, small_input=True, **kw)

"""LeNet-5 (LeCun et al. 1998), the oldest net in the convolutional lineage the paper builds on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998): C1 conv 5x5 (6) -> S2 avg pool 2 -> C3 conv 5x5 (16) -> S4 avg
    pool 2 -> C5 (120) -> F6 (84) -> output, tanh after every layer but the last.

    The common simplifications of the published net, all chosen here:
    - C3 is fully connected to S2's 6 maps (2,416 parameters); the paper's Table I connects each of
      the 16 maps to only 3, 4 or 6 of them (60 of 96 pairs, 1,516 parameters), to break symmetry
      and save compute.
    - S2/S4 are plain 2x2 average pools; the paper's have a trainable coefficient and bias per map
      followed by a squashing function (12 and 32 parameters).
    - tanh rather than the paper's scaled 1.7159 tanh(2a/3).
    - the output is a fully connected layer for softmax cross-entropy, not the paper's fixed
      Euclidean RBF units.
    C5 is a 5x5 conv over 5x5 maps, i.e. a fully connected layer over 16x5x5 = 400 inputs: `Linear`.
    61,706 parameters for 10 classes and 1 channel (the paper's net: 60,000 trainable ones).

    Inputs smaller than 32x32 are zero-padded, centred, to 32x32 in `forward` (MNIST's 28x28 digits
    were placed in a 32x32 field the same way); for 28x28 this is exactly conv1 with padding=2.
    Weights: Glorot uniform, the init derived for tanh (the paper: uniform +-2.4 / fan-in).
    """

    size = 32

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.Tanh(), nn.AvgPool2d(2),  # 32 -> 28 -> 14
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),           # 14 -> 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.Tanh(),  # C5
            nn.Linear(120, 84), nn.Tanh(),          # F6
            nn.Linear(84, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h > self.size or w > self.size:
            raise ValueError(f"LeNet-5 takes images of at most 32x32 pixels, got {h}x{w}")
        if h < self.size or w < self.size:
            ph, pw = self.size - h, self.size - w
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self.classifier(torch.flatten(self.features(x), 1))



@register_model(family="classic", default_classes=10, input_size=(1, 32, 32))
def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 for 32x32 digits (28x28 inputs are zero-padded to 32x32)."""
    return LeNet5(num_classes, in_channels)

"""The networks the paper measures against (PAPER.md section 4): LeNet-5, AlexNet, VGG, GoogLeNet.

Registered names (family "classic"):

    lenet5                       LeCun et al. 1998, 1x32x32 digits (also takes 28x28, see LeNet5)
    alexnet                      Krizhevsky et al. 2012, 3x227x227, single tower
    vgg11 vgg13 vgg16 vgg19      Simonyan & Zisserman configs A, B, D, E, 3x224x224 (torchvision layout)
    vgg11_bn ... vgg19_bn        the same with BatchNorm after every conv (torchvision's *_bn)
    googlenet                    Szegedy et al. 2014 (Inception v1), 3x224x224, two auxiliary heads

Small-input scheme: every net built for ImageNet-sized images also has a `<name>_small` twin
(`alexnet_small`, `vgg16_small`, `vgg16_bn_small`, `googlenet_small`, ...), native size 3x32x32,
10 classes, that keeps the published layer stack but adapts the stem, the pooling and the size of
the classifier so 28-32 px images (CIFAR-10, Fashion-MNIST) give sensible maps; each class says how.
The training loop calls `create_model(name, num_classes=K, in_channels=C)` with no other option, so
the name alone selects the variant. `lenet5` was designed for 32x32 and needs no twin: it zero-pads
28x28 inputs to 32x32 itself, as LeCun did with MNIST.

GoogLeNet's auxiliary heads: in training mode `googlenet` / `googlenet_small` return
`GoogLeNetOutputs(logits, aux_logits2, aux_logits1)` (torchvision's namedtuple); in eval mode the
logits tensor only. `classic_loss(outputs, targets, criterion)` gives the published training loss
(main + 0.3 x each auxiliary loss) for any model's output, and `main_logits(outputs)` the tensor to
score; both pass a plain tensor through unchanged.

Initialisation: torchvision's VGG scheme (He normal fan-out for ReLU convs, N(0, 0.01) for fc
layers, zero biases) for AlexNet, VGG and GoogLeNet, Glorot for the tanh LeNet; each class says how
the original was initialised.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

SMALL_INPUT = (3, 32, 32)


def _init_relu_net(model: nn.Module) -> None:
    """torchvision's VGG init: He normal (fan-out) for convs, as they feed ReLUs; N(0, 0.01) for fc
    layers; BN as the identity; zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and m.bias is not None:
            nn.init.zeros_(m.bias)


# ---- LeNet-5 -------------------------------------------------------------------------------------

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


# ---- AlexNet -------------------------------------------------------------------------------------

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
        _init_relu_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---- VGG -----------------------------------------------------------------------------------------

# Conv widths per 3x3 conv, "M" a 2x2 max pool: the paper's configurations A, B, D and E.
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
        _init_relu_net(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# ---- GoogLeNet -----------------------------------------------------------------------------------

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])
AUX_WEIGHT = 0.3  # the paper: each auxiliary loss is added to the total with weight 0.3


def main_logits(outputs: torch.Tensor | GoogLeNetOutputs) -> torch.Tensor:
    """The logits to score and predict with: the main head of a GoogLeNetOutputs, else `outputs`."""
    return outputs.logits if isinstance(outputs, GoogLeNetOutputs) else outputs


def classic_loss(outputs: torch.Tensor | GoogLeNetOutputs, targets: torch.Tensor,
                 criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 aux_weight: float = AUX_WEIGHT) -> torch.Tensor:
    """Training loss of any model's output: criterion(logits, targets) for a tensor; for
    GoogLeNet in training mode, criterion(main) + aux_weight * (criterion(aux2) + criterion(aux1))
    as published (the auxiliary heads are discarded at inference)."""
    if not isinstance(outputs, GoogLeNetOutputs):
        return criterion(outputs, targets)
    loss = criterion(outputs.logits, targets)
    for aux in (outputs.aux_logits2, outputs.aux_logits1):
        if aux is not None:
            loss = loss + aux_weight * criterion(aux, targets)
    return loss


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
    GoogLeNetOutputs(logits, aux_logits2, aux_logits1); train on `classic_loss`, which weighs each
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
        _init_relu_net(self)

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


# ---- registry ------------------------------------------------------------------------------------

@register_model(family="classic", default_classes=10, input_size=(1, 32, 32))
def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 for 32x32 digits (28x28 inputs are zero-padded to 32x32)."""
    return LeNet5(num_classes, in_channels)


@register_model(family="classic", input_size=(3, 227, 227))
def alexnet(num_classes: int = 1000, in_channels: int = 3, **kw) -> AlexNet:
    """AlexNet as published (single tower, LRN), 227x227."""
    return AlexNet(num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT)
def alexnet_small(num_classes: int = 10, in_channels: int = 3, **kw) -> AlexNet:
    """AlexNet for 28-32 px images: 5x5 stride-1 conv1, padded pools, 1024-wide fc layers."""
    return AlexNet(num_classes, in_channels, small_input=True, **kw)


def _register_vgg(depth: int, batch_norm: bool, small_input: bool) -> None:
    def build(num_classes: int = 1000, in_channels: int = 3, **kw) -> VGG:
        return VGG(VGG_CONFIGS[depth], batch_norm, num_classes, in_channels, small_input=small_input, **kw)

    name = f"vgg{depth}{'_bn' if batch_norm else ''}{'_small' if small_input else ''}"
    build.__doc__ = (f"VGG-{depth}{' with BatchNorm' if batch_norm else ''} for "
                     f"{'28-32 px images' if small_input else '224x224 ImageNet images'}.")
    if small_input:
        register_model(build, name=name, family="classic", default_classes=10, input_size=SMALL_INPUT)
    else:
        register_model(build, name=name, family="classic")


for _small in (False, True):
    for _bn in (False, True):
        for _depth in VGG_CONFIGS:
            _register_vgg(_depth, _bn, _small)


@register_model(family="classic")
def googlenet(num_classes: int = 1000, in_channels: int = 3, **kw) -> GoogLeNet:
    """GoogLeNet (Inception v1), 224x224, auxiliary heads in training mode."""
    return GoogLeNet(num_classes, in_channels, small_input=False, **kw)


@register_model(family="classic", default_classes=10, input_size=SMALL_INPUT)
def googlenet_small(num_classes: int = 10, in_channels: int = 3, **kw) -> GoogLeNet:
    """GoogLeNet for 28-32 px images: 3x3 stride-1 stem without its max pools."""
    return GoogLeNet(num_classes, in_channels, small_input=True, **kw)

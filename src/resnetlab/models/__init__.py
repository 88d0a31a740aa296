"""The networks and their registry: ImageNet and CIFAR ResNets and plain nets (resnet.py, cifar.py),
and the nets the paper measures against (lenet.py, alexnet.py, vgg.py, googlenet.py).

Models know nothing of training. A model whose training output or loss is not "logits, cross-entropy"
says so itself with a `training_loss(outputs, targets, criterion) -> (loss, logits)` method
(GoogLeNet's auxiliary heads); `loss_and_logits` is the one place training code asks for it.

Small-input scheme: every classic net built for ImageNet-sized images has a `<name>_small` twin
(`alexnet_small`, `vgg16_bn_small`, `googlenet_small`, ...), native size 3x32x32, 10 classes, that
keeps the published layer stack but adapts the stem, pooling and classifier to 28-32 px images;
each class says how. `lenet5` was designed for 32x32 and zero-pads 28x28 inputs itself.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Importing the model modules runs their @register_model decorators.
from . import alexnet, cifar, googlenet, lenet, resnet, vgg  # noqa: F401
from .registry import create_model, get_entry, list_models, register_model
from .summary import Summary, conv_output_size, count_params, summarize


def bare_model(model: nn.Module) -> nn.Module:
    """The model under DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def loss_and_logits(model: nn.Module, outputs, targets: torch.Tensor,
                    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of `outputs` (what `model` returned) and the logits to score: the model's own
    `training_loss` where it has one, else criterion(outputs, targets)."""
    own = getattr(bare_model(model), "training_loss", None)
    if own is not None:
        return own(outputs, targets, criterion)
    return criterion(outputs, targets), outputs


__all__ = ["create_model", "get_entry", "list_models", "register_model", "Summary", "summarize",
           "conv_output_size", "count_params", "bare_model", "loss_and_logits"]

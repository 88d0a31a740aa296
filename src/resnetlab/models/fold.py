"""BatchNorm folded into the convolution before it, for inference (predict, export).

`fold_batchnorm(model)`: every convolution followed only by a BatchNorm (the stem, every block,
every projection shortcut `downsample.0/.1`) becomes one convolution with a bias,
W' = W * gamma / sqrt(var + eps), b' = beta + (b - mean) * gamma / sqrt(var + eps)
(`torch.nn.utils.fuse_conv_bn_eval`); the BatchNorm becomes an Identity. The pairs are found by
tracing the forward pass (torch.fx), so a conv whose output is also used elsewhere is left alone
(a model torch.fx cannot trace gets only the Conv -> BatchNorm pairs inside nn.Sequential).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) of every BatchNorm that reads only the output of a convolution
    read by nothing else, from a torch.fx trace of `model` in its current mode. Where the model
    cannot be traced, only consecutive Conv -> BatchNorm children of plain nn.Sequential containers
    are paired."""
    modules = dict(model.named_modules())
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # tracing fails in many ways on dynamic code: fall back to the certain pairs
        return _sequential_pairs(model)
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.op == "call_module" and len(src.users) == 1):
            continue
        if calls[node.target] == 1 and calls[src.target] == 1 and \
                _foldable(modules.get(src.target), modules.get(node.target)):
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, m in model.named_modules():
        if type(m) is not nn.Sequential:
            continue
        children = list(m.named_children())
        for (a, conv), (b, bn) in zip(children, children[1:], strict=False):
            if _foldable(conv, bn):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


def _foldable(conv, bn) -> bool:
    return (isinstance(conv, _CONVS) and isinstance(bn, _BATCHNORMS) and bn.running_mean is not None
            and bn.num_features == conv.out_channels)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with every Conv -> BatchNorm pair folded into one convolution
    (BatchNorm replaced by nn.Identity); the model itself is not changed. BatchNorms that follow no
    convolution stay as they are."""
    return fold_with_pairs(model)[0]


def fold_with_pairs(model: nn.Module) -> tuple[nn.Module, list[tuple[str, str]]]:
    """`fold_batchnorm` and the (conv, BatchNorm) name pairs it folded."""
    folded = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(folded)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        _replace(folded, conv_name, torch.nn.utils.fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    return folded, pairs

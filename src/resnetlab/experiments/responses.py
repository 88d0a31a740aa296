"""Paper Fig. 7: the standard deviation of every 3x3 layer's response on the test set.

A "response" is the output of a 3x3 convolution after its BatchNorm and before the addition and
ReLU: exactly the output of the BN module that follows each 3x3 conv, so forward hooks on those BN
modules see the right tensors without changing the model. The std of a layer is taken over all
its output values (images x channels x positions) of the whole test set, in eval mode.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from ..data.loader import View
from ..data.stream import loader_for
from ..train.evaluate import load_trained
from ..viz.curves import plot_responses
from .common import ExperimentSpec, load_data, train_or_reuse, write_results


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(name, BN) for every BN that follows a 3x3 conv (conv{i} -> bn{i}), in forward order."""
    found = []
    for prefix, module in model.named_modules():
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and isinstance(bn, nn.BatchNorm2d):
                found.append((f"{prefix}.bn{i}" if prefix else f"bn{i}", bn))
    return found


class ResponseStats:
    """Forward hooks that accumulate sum and sum of squares (float64) of each response layer."""

    def __init__(self, model: nn.Module):
        self.layers = response_layers(model)
        self.sums = {n: 0.0 for n, _ in self.layers}
        self.squares = {n: 0.0 for n, _ in self.layers}
        self.counts = {n: 0 for n, _ in self.layers}
        self.handles = [bn.register_forward_hook(self._hook(n)) for n, bn in self.layers]

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            o = output.detach().double()
            self.sums[name] += o.sum().item()
            self.squares[name] += (o * o).sum().item()
            self.counts[name] += o.numel()
        return hook

    def std(self) -> list[float]:
        out = []
        for name, _ in self.layers:
            n = self.counts[name]
            mean = self.sums[name] / n
            out.append(math.sqrt(max(self.squares[name] / n - mean * mean, 0.0)))
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def layer_response_std(run_dir: Path, data) -> list[float]:
    """Std of each 3x3 layer's response of a trained run over `data.test`."""
    model, _saved, normalizer = load_trained(run_dir)
    stats = ResponseStats(model)
    loader = loader_for(data.test, 500, train=False, view=View("none"), normalizer=normalizer)
    for x, _ in loader.epoch():
        model(x)
    stats.remove()
    return stats.std()


def run(spec: ExperimentSpec, depths: list[int] | None = None) -> dict:
    started = time.time()
    depths = sorted(depths or [20, 56])
    data = load_data(spec)
    stds = {}
    for kind in ("plain", "resnet"):
        for d in depths:
            stds[f"{kind}{d}"] = layer_response_std(train_or_reuse(spec, f"{kind}{d}", data=data), data)
    fig = "responses.png"
    plot_responses(stds, spec.out / fig, title=f"{spec.data_label}, budget {spec.budget}")
    mean = {k: sum(v) / len(v) for k, v in stds.items()}
    rows = ["| net | 3x3 layers | mean std | median std | max std |", "|---|---|---|---|---|"]
    for k, v in stds.items():
        s = sorted(v)
        rows.append(f"| {k} | {len(v)} | {mean[k]:.3f} | {s[len(s) // 2]:.3f} | {max(v):.3f} |")
    v = []
    for d in depths:
        smaller = mean[f"resnet{d}"] < mean[f"plain{d}"]
        v.append(f"depth {d}: ResNet responses are {'smaller' if smaller else 'not smaller'} than the plain "
                 f"net's (mean std {mean[f'resnet{d}']:.3f} vs {mean[f'plain{d}']:.3f})")
    if len(depths) > 1:
        res = [mean[f"resnet{d}"] for d in depths]
        falls = all(a > b for a, b in zip(res, res[1:], strict=False))
        v.append(f"deeper ResNets have {'smaller' if falls else 'not always smaller'} responses "
                 f"({', '.join(f'resnet-{d}: {m:.3f}' for d, m in zip(depths, res, strict=True))}); "
                 "the paper finds smaller responses with depth")
    return write_results(spec, "responses", {"depths": depths, "std": stds, "mean_std": mean},
                         "\n".join(rows), v, [fig], started)

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
from ..data.open import loader_for
from ..run import load_trained
from ..stats import compare, summarize
from ..viz.curves import plot_responses
from .common import ExperimentSpec, label, load_data, train_or_reuse, write_results


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
    per_seed: dict[str, list[list[float]]] = {}   # net -> one list of layer stds per seed
    for kind in ("plain", "resnet"):
        for d in depths:
            name = f"{kind}{d}"
            per_seed[name] = [layer_response_std(train_or_reuse(spec, name, data=data, seed=s), data)
                              for s in spec.seeds]
    # The figure: each layer's std averaged over seeds.
    stds = {k: [sum(col) / len(col) for col in zip(*v, strict=True)] for k, v in per_seed.items()}
    fig = "responses.png"
    n = len(spec.seeds)
    plot_responses(stds, spec.out / fig, title=f"{spec.data_label}, budget {spec.budget}"
                   + (f", mean of {n} seeds" if n > 1 else ""))
    # One number per run (its layers' mean std), compared over seeds.
    run_means = {k: [sum(v) / len(v) for v in runs] for k, runs in per_seed.items()}
    rows = ["| net | 3x3 layers | mean std | median std | max std |", "|---|---|---|---|---|"]
    for k, v in stds.items():
        s = sorted(v)
        rows.append(f"| {label(k)} | {len(v)} | {summarize(run_means[k]).fmt(False)} | "
                    f"{s[len(s) // 2]:.3f} | {max(v):.3f} |")
    table = "\n".join(rows) + ("\n\nMean std: mean ± std over seeds of each run's average over its layers; "
                               "median and max: of the seed-averaged layer stds." if n > 1 else "")
    v = []
    for d in depths:
        text, _ = compare(label(f"resnet{d}"), run_means[f"resnet{d}"], label(f"plain{d}"),
                          run_means[f"plain{d}"], "mean response std", percent=False)
        v.append(f"depth {d}: {text}; the paper finds ResNet responses smaller")
    for a, b in zip(depths, depths[1:], strict=False):
        text, _ = compare(label(f"resnet{b}"), run_means[f"resnet{b}"], label(f"resnet{a}"),
                          run_means[f"resnet{a}"], "mean response std", percent=False)
        v.append(f"{text}; the paper finds smaller responses with depth")
    mean_std = {k: summarize(m).to_dict() for k, m in run_means.items()}
    return write_results(spec, "responses", {"depths": depths, "std": stds, "std_per_seed": per_seed,
                                             "mean_std": mean_std},
                         table, v, [fig], started)

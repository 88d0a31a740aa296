"""Parameter and mult-add counts per layer, and the convolution output-size formula.

Mult-adds come from torch.utils.flop_counter (FLOPs / 2): convolutions and fully connected
layers, the quantity the paper's Table 1 reports. BN, ReLU, pooling and additions are not
counted, as in the paper.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Element-wise layers that add a row to a summary without adding information.
_QUIET = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Dropout, nn.Identity, nn.Flatten)


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: list[int]
    params: int
    mult_adds: int


@dataclass
class Summary:
    input_size: list[int]
    params: int
    trainable_params: int
    mult_adds: int
    rows: list[LayerRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self, title: str = "") -> str:
        head = f"{'layer':<34} {'type':<18} {'output':<20} {'params':>12} {'mult-adds':>15}"
        lines = [title] if title else []
        lines += [head, "-" * len(head)]
        for r in self.rows:
            shape = "x".join(map(str, r.output_shape))
            lines.append(f"{r.name:<34} {r.type:<18} {shape:<20} {r.params:>12,} {r.mult_adds:>15,}")
        lines.append("-" * len(head))
        lines.append(f"input {'x'.join(map(str, self.input_size))}: {self.params:,} parameters "
                     f"({self.trainable_params:,} trainable), {self.mult_adds:,} mult-adds "
                     f"({self.mult_adds / 1e9:.3f} G)")
        return "\n".join(lines)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def summarize(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> Summary:
    """Run one image of `input_size` (C, H, W) through `model` in eval mode and count."""
    leaves = {n: m for n, m in model.named_modules() if not list(m.children()) and n}
    shapes: dict[str, list[int]] = {}
    hooks = []
    for name, mod in leaves.items():
        def hook(_m, _inp, out, name=name):
            if name not in shapes and isinstance(out, torch.Tensor):
                shapes[name] = list(out.shape[1:])
        hooks.append(mod.register_forward_hook(hook))

    param = next(model.parameters(), None)
    x = torch.zeros(1, *input_size, device=param.device if param is not None else "cpu")
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    prefix = type(model).__name__ + "."
    per_module = {k[len(prefix):]: sum(v.values()) for k, v in counter.get_flop_counts().items()
                  if k.startswith(prefix)}
    rows = [
        LayerRow(name, type(mod).__name__, shapes.get(name, []),
                 sum(p.numel() for p in mod.parameters(recurse=False)), per_module.get(name, 0) // 2)
        for name, mod in leaves.items() if not isinstance(mod, _QUIET) and name in shapes
    ]
    return Summary(
        input_size=list(input_size),
        params=count_params(model),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        mult_adds=counter.get_total_flops() // 2,
        rows=rows,
    )


@dataclass(frozen=True)
class ConvOutput:
    """Result of (N - F + 2P)/S + 1 for input size N, filter F, padding P and stride S."""

    n: int
    f: int
    stride: int
    padding: int
    size: int        # output size, floor((N - F + 2P) / S) + 1, what PyTorch computes
    exact: bool      # True when the filter tiles the padded input exactly
    uncovered: int   # rows/columns at the end of the padded input that no filter position covers

    def __str__(self) -> str:
        expr = f"({self.n} - {self.f} + 2*{self.padding})/{self.stride} + 1"
        if self.exact:
            return f"{expr} = {self.size}: the filter tiles the input exactly"
        value = (self.n - self.f + 2 * self.padding) / self.stride + 1
        return (f"{expr} = {value:.2f}: not an integer, the filter does not tile the input; the "
                f"last {self.uncovered} row(s)/column(s) of the padded input are never covered "
                f"and PyTorch gives {self.size}")


def conv_output_size(n: int, f: int, stride: int = 1, padding: int = 0) -> ConvOutput:
    """Output size of a convolution or pooling window; says when the filter does not tile.

    >>> conv_output_size(7, 3, stride=2).size
    3
    >>> conv_output_size(7, 3, stride=3).exact
    False
    """
    if min(n, f, stride) < 1 or padding < 0:
        raise ValueError(f"need N, F, S >= 1 and P >= 0, got N={n} F={f} S={stride} P={padding}")
    span = n + 2 * padding - f
    if span < 0:
        raise ValueError(f"filter {f} is larger than the padded input {n + 2 * padding}")
    return ConvOutput(n, f, stride, padding, span // stride + 1, span % stride == 0, span % stride)


def same_padding(f: int) -> int:
    """Padding (F - 1)/2 that keeps the size at stride 1 (odd F)."""
    if f % 2 == 0:
        raise ValueError(f"an even filter ({f}) cannot keep the size with symmetric padding")
    return (f - 1) // 2

"""Weight EMA (--ema): an exponential moving average of the weights, updated after every step.

`torch.optim.swa_utils.AveragedModel` over a copy of the model with parameters AND buffers averaged
(use_buffers=True): the averaged BatchNorm statistics go with the averaged weights, so the average
needs no BatchNorm recalibration pass. Its state is the copy's tensors plus the update count; both
go into every checkpoint (train/checkpoint.py), so a resumed run continues the same average exactly.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightEMA(AveragedModel):
    """`module` is the average (evaluate it, save it); `update_parameters(model)` after each step."""

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=self._average, use_buffers=True)
        self.decay = decay

    @property
    def updates(self) -> int:
        return int(self.n_averaged)   # kept on the CPU by AveragedModel: no device sync per step

    def decay_now(self) -> float:
        """The decay of the next update. The first update copies the weights (AveragedModel), so the
        average starts from barely trained ones; with a fixed decay of 0.999 they would still weigh
        0.999^t (37% after 1000 steps, longer than a fast run). Hence the warm-up timm and TF use:
        min(decay, (1 + t) / (10 + t)) after t updates, which forgets the early weights quickly."""
        t = self.updates
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n) -> None:
        # Called once per (device, dtype) group of tensors, so each list has one dtype.
        if torch.is_floating_point(averaged[0]):
            get_ema_multi_avg_fn(self.decay_now())(averaged, current, n)
        else:   # integer buffers (BatchNorm's num_batches_tracked) are counts: copied, not averaged
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

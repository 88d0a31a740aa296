"""Lookahead (--lookahead), as airbench uses it: a slow copy of the weights that the run keeps
pulling itself back onto.

Every `every` steps the slow copy moves toward the trained weights, slow <- slow + (1 - d)(w - slow),
and the weights jump to it, w <- slow. The decay d = peak * (t / T)^3 rises over the run (t: the
step, T: the run's length), so early steps are barely averaged and late ones strongly; on the last
step the weights take the slow copy as it stands (d = 1). airbench's values: peak 0.95^5 ~ 0.774,
every 5 steps. BatchNorm's running statistics are averaged with the weights (airbench averages the
whole float state), so no recalibration pass is needed. The slow copy goes into every checkpoint
(train/checkpoint.py), so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ResnetlabError


class Lookahead:
    def __init__(self, model: nn.Module, peak: float, every: int = 5):
        self.peak, self.every = peak, every
        self.slow = {k: v.detach().clone() for k, v in self.tensors(model).items()}

    @staticmethod
    def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
        """The state the slow copy follows: every floating-point parameter and buffer."""
        return {k: v for k, v in model.state_dict().items() if torch.is_floating_point(v)}

    def decay(self, step: int, total: int) -> float:
        return 1.0 if step >= total else self.peak * (step / total) ** 3

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, total: int) -> None:
        """Call after optimiser step number `step` (1-based) of `total`; syncs on every `every`-th
        step and on the last."""
        if step % self.every and step < total:
            return
        weight = 1.0 - self.decay(step, total)
        for k, w in self.tensors(model).items():
            slow = self.slow[k]
            slow.lerp_(w, weight)
            w.copy_(slow)

    def load(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        if tensors.keys() != self.slow.keys():
            raise ResnetlabError(f"{where} holds Lookahead weights for another model (tensor names "
                                 "differ); resume the run with the model it was started with")
        for k, v in tensors.items():
            self.slow[k].copy_(v)

"""Optimiser state in a checkpoint: round trip, and a clear error when the layout differs."""

import pytest
import torch

from resnetlab import ResnetlabError
from resnetlab.train.checkpoint import optimizer_from_tensors, optimizer_to_tensors


def stepped_sgd(groups):
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    for g in groups:
        for p in g["params"]:
            p.grad = torch.ones_like(p)
    opt.step()
    return opt


def test_optimizer_state_round_trips():
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))
    tensors, meta = optimizer_to_tensors(stepped_sgd([{"params": [a]}, {"params": [b], "lr_mult": 1.0}]))
    fresh = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_mult": 1.0}], lr=0.1, momentum=0.9)
    optimizer_from_tensors(fresh, tensors, meta)
    assert torch.equal(fresh.state[a]["momentum_buffer"], torch.ones(3))
    assert fresh.param_groups[1]["lr_mult"] == 1.0


def test_a_checkpoint_with_other_parameter_groups_is_one_clear_error():
    """E.g. a checkpoint written before the classifier got its own group, or with other --freeze."""
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2))
    tensors, meta = optimizer_to_tensors(stepped_sgd([{"params": [a, b]}]))
    now = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9)
    with pytest.raises(ResnetlabError, match=r"sizes \[2\], this run builds \[1, 1\].*new --out folder"):
        optimizer_from_tensors(now, tensors, meta)

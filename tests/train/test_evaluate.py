"""resnetlab.train.evaluate: multi-view evaluation averages the views' probabilities."""

import pytest
import torch
import torch.nn.functional as F

from resnetlab.data.augment import Normalizer
from resnetlab.data.loader import BatchLoader, View
from resnetlab.train.evaluate import evaluate


class _Linear(torch.nn.Module):
    """Logits linear in the pixels; `symmetric`: the weights are mirror-symmetric, so an image and
    its mirror get the same logits."""

    def __init__(self, symmetric: bool, classes=3, size=6):
        super().__init__()
        w = torch.randn(classes, 1, size, size, generator=torch.Generator().manual_seed(1)) * 0.2
        self.register_buffer("w", (w + w.flip(-1)) / 2 if symmetric else w)

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.w)


def _loader(view: str, x, y):
    return BatchLoader(x, y, 4, train=False, view=View(view), normalizer=Normalizer.fit(x, "channel"))


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (10, 1, 6, 6), dtype=torch.uint8, generator=gen), torch.arange(10) % 3


def test_flip_view_of_a_mirror_symmetric_model_is_the_plain_view():
    x, y = _data()
    model = _Linear(symmetric=True)
    flip, plain = evaluate(model, _loader("flip", x, y), 3), evaluate(model, _loader("none", x, y), 3)
    assert flip.n == plain.n == 10
    assert abs(flip.loss - plain.loss) < 1e-5 and flip.top1_error == plain.top1_error
    assert torch.equal(flip.confusion, plain.confusion)


def test_flip_view_averages_the_softmax_of_the_image_and_its_mirror():
    x, y = _data()
    model = _Linear(symmetric=False)
    inputs = Normalizer.fit(x, "channel")(x)
    probs = (model(inputs).softmax(1) + model(inputs.flip(-1)).softmax(1)) / 2   # by hand
    r = evaluate(model, _loader("flip", x, y), 3)
    assert abs(r.loss - F.nll_loss(probs.log(), y).item()) < 1e-5
    assert r.top1_error == pytest.approx(1 - (probs.argmax(1) == y).double().mean().item())
    plain = evaluate(model, _loader("none", x, y), 3)
    assert abs(r.loss - plain.loss) > 1e-3   # the mirror changes the answer of this model

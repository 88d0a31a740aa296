"""LeNet-5, AlexNet, VGG and GoogLeNet: published counts, torchvision compatibility, small inputs.

Nets at ImageNet size are built on the meta device wherever only shapes and counts matter, so
the 138M-parameter VGGs cost nothing; real forwards run at small sizes.
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision

import resnetlab
from resnetlab import ResnetlabError, create_model, list_models, summarize
from resnetlab.models import loss_and_logits
from resnetlab.models.googlenet import AUX_WEIGHT, GoogLeNetOutputs
from resnetlab.models.registry import get_entry

VGGS = [f"vgg{d}{bn}" for bn in ("", "_bn") for d in (11, 13, 16, 19)]
NATIVE = ["lenet5", "alexnet", *VGGS, "googlenet"]
SMALL = ["alexnet_small", *[f"{v}_small" for v in VGGS], "googlenet_small"]


def meta_model(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def params(name, **kw):
    return resnetlab.count_params(meta_model(name, **kw))


def test_every_classic_name_is_listed_with_its_native_size():
    assert set(list_models(family="classic")) >= set(NATIVE) | set(SMALL)
    assert get_entry("lenet5").input_size == (1, 32, 32)
    assert get_entry("alexnet").input_size == (3, 227, 227)
    assert get_entry("vgg16").input_size == get_entry("googlenet").input_size == (3, 224, 224)
    for name in SMALL:
        entry = get_entry(name)
        assert (entry.family, entry.input_size, entry.default_classes) == ("classic", (3, 32, 32), 10)


def test_lenet5_parameters():
    # conv1 6*(25+1)=156, conv2 16*(6*25+1)=2,416, C5 120*(400+1)=48,120, F6 84*(120+1)=10,164,
    # output 10*(84+1)=850: 61,706 with a full C3 table.
    assert params("lenet5", num_classes=10, in_channels=1) == 61_706


def test_alexnet_parameters_single_tower():
    # conv1 96*(3*11*11+1)=34,944   conv2 256*(96*25+1)=614,656   conv3 384*(256*9+1)=885,120
    # conv4 384*(384*9+1)=1,327,488 conv5 256*(384*9+1)=884,992
    # fc6 4096*(256*6*6+1)=37,752,832  fc7 4096*(4096+1)=16,781,312  fc8 1000*(4096+1)=4,097,000
    assert params("alexnet") == 62_378_344
    with torch.device("meta"):
        assert resnetlab.count_params(torchvision.models.alexnet()) == 61_100_840  # the docstring's claim


@pytest.mark.parametrize("name,count", [("vgg16", 138_357_544), ("vgg19", 143_667_240)])
def test_vgg_published_parameters(name, count):
    assert params(name) == count


def test_googlenet_parameters():
    # torchvision's layout (3x3 in the "5x5" branch) without the auxiliary heads.
    assert params("googlenet", aux_logits=False, torchvision_compat=True) == 6_624_904
    # The published 5x5 convs add 16 weights per (reduce, out) channel pair: 16 * (16*32 + 32*96 +
    # 16*48 + 24*64 + 24*64 + 32*64 + 32*128 + 32*128 + 48*128) = 380,928.
    assert params("googlenet", aux_logits=False) == 6_624_904 + 380_928
    # Each auxiliary head: 1x1 conv 128*C + its BN 2*128, fc1 2048*1024+1024, fc2 1024*1000+1000.
    aux = sum(128 * c + 256 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    assert params("googlenet") == 7_005_832 + aux == 13_385_816


@pytest.mark.parametrize("name", VGGS)
def test_vgg_state_dict_layout_matches_torchvision(name):
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)().state_dict()
    ours = meta_model(name).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}


def _randomise_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_vgg_loads_torchvision_weights_strictly_and_gives_the_same_logits(name):
    reference = getattr(torchvision.models, name)(init_weights=False).eval()  # any weights do
    _randomise_bn(reference)
    ours = meta_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, 64, 64)  # 2x2 maps, which the 7x7 adaptive pool spreads: same code path
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4


def test_googlenet_torchvision_compat_loads_weights_and_matches_logits_and_aux_heads():
    reference = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    _randomise_bn(reference)
    ours = meta_model("googlenet", torchvision_compat=True)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference.eval(), ours.eval()
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4
        # Training mode with every dropout off: batch-statistics BN, deterministic aux heads.
        for model in (reference, ours):
            model.train()
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.eval()
        got, want = ours(x), reference(x)
    assert isinstance(got, GoogLeNetOutputs)
    for a, b in zip(got, want, strict=True):
        assert (a - b).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", NATIVE)
def test_native_size_output_shape(name):
    # On the meta device: shapes only, so the VGGs at 224x224 cost nothing.
    entry = get_entry(name)
    model = meta_model(name, in_channels=entry.input_size[0]).eval()
    out = model(torch.empty(2, *entry.input_size, device="meta"))
    assert out.shape == (2, entry.default_classes)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "googlenet"])
def test_native_size_real_forward(name):
    entry = get_entry(name)
    model = create_model(name, in_channels=entry.input_size[0]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *entry.input_size))
    assert out.shape == (2, entry.default_classes) and torch.isfinite(out).all()


def test_alexnet_map_sizes_and_mult_adds():
    rows = {r.name: r for r in summarize(meta_model("alexnet"), (3, 227, 227)).rows}
    assert rows["features.0"].output_shape == [96, 55, 55]     # (227 - 11)/4 + 1
    assert rows["features.3"].output_shape == [96, 27, 27]     # (55 - 3)/2 + 1
    assert rows["features.7"].output_shape == [256, 13, 13]
    assert rows["features.14"].output_shape == [256, 6, 6]
    assert rows["features.0"].mult_adds == 96 * 3 * 11 * 11 * 55 * 55
    # 224x224 crops (the ImageNet recipe) give 5x5 maps, which the adaptive pool takes to 6x6.
    rows = {r.name: r for r in summarize(meta_model("alexnet"), (3, 224, 224)).rows}
    assert rows["features.14"].output_shape == [256, 5, 5] and rows["avgpool"].output_shape == [256, 6, 6]


@pytest.mark.parametrize("size", [(3, 32, 32), (1, 28, 28)])
def test_small_variants_map_sizes(size):
    def shapes(name):
        model = meta_model(name, num_classes=10, in_channels=size[0])
        return {r.name: r.output_shape for r in summarize(model, size).rows}

    assert shapes("vgg16_small")["features.30"] == [512, 1, 1]  # the fifth pool
    alex = shapes("alexnet_small")
    assert alex["features.3"][1:] == [size[1] // 2] * 2 and alex["features.14"] == [256, 4, 4]
    goog = shapes("googlenet_small")
    assert goog["inception3b.branch1.bn"][1:] == [size[1]] * 2
    assert goog["inception5b.branch1.bn"][1:] == [size[1] // 4] * 2


@pytest.mark.parametrize("name", ["lenet5", *SMALL])
def test_small_input_forward_and_backward(name):
    # Training step on 28x28 gray (Fashion-MNIST); evaluation forward on 32x32 RGB (CIFAR-10).
    model = create_model(name, num_classes=10, in_channels=1).train()
    out = model(torch.randn(2, 1, 28, 28))
    loss, logits = loss_and_logits(model, out, torch.tensor([3, 7]))
    assert logits.shape == (2, 10)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model = create_model(name, num_classes=10, in_channels=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10) and torch.isfinite(out).all()


def test_googlenet_returns_aux_outputs_in_training_mode_only():
    model = meta_model("googlenet").train()
    x = torch.empty(2, 3, 224, 224, device="meta")
    out = model(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 1000)
    assert model.eval()(x).shape == (2, 1000)
    small = meta_model("googlenet_small", in_channels=1).train()
    out = small(torch.empty(2, 1, 28, 28, device="meta"))
    assert [o.shape for o in out] == [(2, 10)] * 3
    no_aux = meta_model("googlenet_small", aux_logits=False).train()
    assert no_aux.aux1 is None and no_aux(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


def test_googlenet_training_loss_weighs_aux_heads_by_0_3():
    y = torch.tensor([0, 2])
    logits, aux2, aux1 = torch.randn(3, 2, 5).unbind(0)
    goog = meta_model("googlenet_small", num_classes=5)
    plain = meta_model("resnet20", num_classes=5)
    loss, scored = loss_and_logits(plain, logits, y)
    assert torch.equal(loss, F.cross_entropy(logits, y)) and scored is logits
    want = F.cross_entropy(logits, y) + 0.3 * (F.cross_entropy(aux2, y) + F.cross_entropy(aux1, y))
    assert AUX_WEIGHT == 0.3
    # Wrapped as the loop wraps it (torch.compile keeps the net as _orig_mod): the method still found.
    wrapped = torch.nn.Module()
    wrapped._orig_mod = goog
    loss, scored = loss_and_logits(wrapped, GoogLeNetOutputs(logits, aux2, aux1), y)
    assert torch.allclose(loss, want) and scored is logits
    smoothed, _ = loss_and_logits(goog, GoogLeNetOutputs(logits, aux2, aux1), y,
                                  lambda o, t: F.cross_entropy(o.float(), t, label_smoothing=0.1))
    assert smoothed.shape == ()


def test_lenet5_pads_28px_to_32px_and_rejects_larger():
    model = create_model("lenet5", num_classes=10, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), model(F.pad(x, (2, 2, 2, 2))))
    with pytest.raises(ValueError, match="at most 32x32"):
        model(torch.randn(1, 1, 36, 36))


def test_small_input_is_chosen_by_name_not_by_option():
    with pytest.raises(ResnetlabError, match="has no option"):
        create_model("vgg16", small_input=True)
    with pytest.raises(ResnetlabError, match="has no option"):
        create_model("alexnet_small", small_input=False)

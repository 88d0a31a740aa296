import pytest
import torch
from torch import nn

from resnetlab import create_model
from resnetlab.models.blocks import BasicBlock, Bottleneck, PadShortcut


def params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,size", [("resnet20", 32), ("resnet56", 32), ("resnet110", 32),
                                       ("resnet18", 64), ("resnet34", 64), ("resnet50", 64)])
def test_output_shapes(name, size):
    model = create_model(name, num_classes=7).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name,size", [("resnet20", 28), ("plain20", 28), ("resnet18", 28),
                                       ("resnet50", 32), ("plain50", 28)])
def test_one_channel_input_for_grayscale_data(name, size):
    model = create_model(name, num_classes=10, in_channels=1).eval()
    assert model.conv1.in_channels == 1
    assert model(torch.randn(3, 1, size, size)).shape == (3, 10)


def test_cifar_feature_map_sizes():
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    x = model.relu(model.bn1(model.conv1(x)))
    sizes = []
    for stage in (model.layer1, model.layer2, model.layer3):
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_imagenet_feature_map_sizes():
    model = create_model("resnet50").eval()
    x = torch.randn(1, 3, 224, 224)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    assert x.shape[-1] == 56
    sizes = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18", "resnet50"])
def test_backward_reaches_every_parameter(name):
    model = create_model(name, num_classes=5)
    size = 32 if "20" in name else 64
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, size, size)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("depth", [20, 56])
def test_option_a_adds_no_parameters_over_the_plain_net(depth):
    assert params(create_model(f"resnet{depth}", shortcut="A")) == params(create_model(f"plain{depth}"))


def test_options_b_and_c_add_exactly_the_projections():
    plain, a = params(create_model("plain20")), params(create_model("resnet20", shortcut="A"))
    b, c = params(create_model("resnet20", shortcut="B")), params(create_model("resnet20", shortcut="C"))
    # B: a 1x1 conv + BN at the two places dimensions grow: 16->32 and 32->64.
    assert b - plain == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C: a projection on every one of the 9 shortcuts (3 per stage).
    proj = lambda cin, cout: cin * cout + 2 * cout  # noqa: E731
    assert c - plain == 3 * proj(16, 16) + proj(16, 32) + 2 * proj(32, 32) + proj(32, 64) + 2 * proj(64, 64)
    assert a == plain < b < c


def test_imagenet_default_is_option_b():
    model = create_model("resnet34")
    projections = [n for n, m in model.named_modules() if n.endswith("downsample")]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]
    assert params(create_model("resnet34", shortcut="A")) == params(create_model("plain34"))


def test_plain_and_residual_differ_only_in_the_shortcut():
    torch.manual_seed(1)
    res = create_model("resnet20", shortcut="A")
    torch.manual_seed(1)
    plain = create_model("plain20")
    # Same modules, same names, same shapes, same initial weights ...
    rs, ps = res.state_dict(), plain.state_dict()
    assert rs.keys() == ps.keys()
    assert all(torch.equal(rs[k], ps[k]) for k in rs)
    assert [type(m) for m in plain.modules() if not isinstance(m, PadShortcut)] == \
        [type(m) for m in res.modules() if not isinstance(m, PadShortcut)]
    # ... and the only switch is the addition: turning it off makes the ResNet the plain net.
    x = torch.randn(2, 3, 32, 32)
    res.eval(), plain.eval()
    assert not torch.allclose(res(x), plain(x))
    for m in res.modules():
        if isinstance(m, BasicBlock):
            m.residual = False
    assert torch.equal(res(x), plain(x))


def test_plain_blocks_have_no_shortcut_module():
    for name in ("plain20", "plain18", "plain50"):
        assert not any(n.endswith("downsample") for n, _ in create_model(name).named_modules())


def test_option_a_pads_channels_with_zeros_and_subsamples():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_bottleneck_stride_placement():
    paper = Bottleneck(256, 128, stride=2, stride_in_1x1=True)
    v15 = Bottleneck(256, 128, stride=2)
    assert paper.conv1.stride == (2, 2) and paper.conv2.stride == (1, 1)
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    x = torch.randn(1, 256, 16, 16)
    assert paper.eval()(x).shape == v15.eval()(x).shape == (1, 512, 8, 8)


def test_he_initialisation_and_bn_after_every_conv():
    model = create_model("resnet56")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns)
    w = model.layer3[4].conv1.weight
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert abs(w.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
    assert all(torch.equal(b.weight, torch.ones_like(b.weight)) for b in bns)


def test_zero_init_residual_makes_each_block_start_as_identity():
    model = create_model("resnet20", zero_init_residual=True)
    assert all(b.bn2.weight.abs().sum() == 0 for b in model.modules() if isinstance(b, BasicBlock))
    model = create_model("resnet50", zero_init_residual=True)
    assert all(b.bn3.weight.abs().sum() == 0 for b in model.modules() if isinstance(b, Bottleneck))

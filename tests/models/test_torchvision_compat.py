import pytest
import torch
import torchvision

from resnetlab import create_model


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_logits(depth):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    # Randomise BN statistics so the check covers them, not only the conv weights.
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    ours = create_model(f"resnet{depth}", shortcut="B").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize("depth", [18, 50])
def test_same_parameter_names_and_shapes_as_torchvision(depth):
    ref = getattr(torchvision.models, f"resnet{depth}")().state_dict()
    ours = create_model(f"resnet{depth}").state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}

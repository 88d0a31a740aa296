import importlib

import pytest
import torch

import resnetlab
from resnetlab import ResnetlabError, create_model, list_models, register_model
from resnetlab.models import get_entry

PAPER_PARAMS = {  # torchvision's (ImageNet, 1000 classes); option A (CIFAR, 10)
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "resnet1202": 19_421_274,
}


def meta_params(name, **kw):
    with torch.device("meta"):
        return resnetlab.count_params(create_model(name, **kw))


def test_every_named_model_is_listed():
    names = set(list_models())
    for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110, 1202):
        assert {f"resnet{depth}", f"plain{depth}"} <= names
    assert set(list_models(family="cifar")) >= {"resnet20", "plain1202"}
    assert "resnet20" not in list_models(family="imagenet")


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(name):
    assert meta_params(name) == PAPER_PARAMS[name]


@pytest.mark.parametrize("name,depth", [("resnet8", 8), ("plain14", 14), ("resnet26", 26),
                                         ("cifar_resnet50", 50), ("cifar_plain152", 152)])
def test_any_cifar_depth_by_pattern(name, depth):
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == depth  # 6n+2 weighted layers, option A adds none


def test_short_name_prefers_imagenet_where_depths_collide():
    assert meta_params("resnet50") == PAPER_PARAMS["resnet50"]
    assert meta_params("cifar_resnet50") < 1_000_000


@pytest.mark.parametrize("name", ["resnet21", "resnet2", "vgg", "resnet-20", ""])
def test_unknown_names_raise_a_clear_error(name):
    with pytest.raises(ResnetlabError, match="unknown model"):
        create_model(name)


def test_unknown_option_is_an_error_not_ignored():
    with pytest.raises(ResnetlabError, match="has no option 'shortcutt'"):
        create_model("resnet20", shortcutt="B")
    with pytest.raises(ResnetlabError, match="shortcut must be one of A, B, C"):
        create_model("resnet20", shortcut="D")
    # A basic-block net has no 1x1 to stride: the option is not accepted, not silently ignored.
    with pytest.raises(ResnetlabError, match="has no option 'stride_in_1x1'"):
        create_model("resnet18", stride_in_1x1=True)
    with pytest.raises(ResnetlabError, match="has no option"):
        create_model("resnet8", stride_in_1x1=True)   # a resolved depth checks options too
    assert create_model("resnet50", stride_in_1x1=True).layer2[0].conv1.stride == (2, 2)


def test_an_error_inside_a_builder_is_not_reported_as_a_bad_option():
    @register_model(family="classic", default_classes=3, input_size=(1, 8, 8))
    def broken_test_net(num_classes=3, in_channels=1):
        return torch.nn.Linear(in_channels, num_classes, no_such_argument=1)   # a bug, not user input

    with pytest.raises(TypeError, match="no_such_argument"):
        create_model("broken_test_net")


@pytest.mark.parametrize("name", [n for n in list_models() if get_entry(n).builder.__module__
                                  .startswith("resnetlab.")])
def test_every_public_name_is_a_function_of_its_module(name):
    # timm's pattern: `def resnet50` exists to grep and import, and the registry keeps that function.
    entry = get_entry(name)
    module = importlib.import_module(entry.builder.__module__)
    assert getattr(module, name) is entry.builder


def test_register_model_adds_a_name_and_rejects_duplicates():
    @register_model(family="classic", default_classes=3, input_size=(1, 8, 8))
    def tiny_test_net(num_classes=3, in_channels=1, width=64):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * width, num_classes))

    assert "tiny_test_net" in list_models()
    assert get_entry("tiny_test_net").options == ("width",)   # read off the builder's signature
    assert create_model("tiny_test_net", in_channels=1)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="twice"):
        register_model(tiny_test_net)

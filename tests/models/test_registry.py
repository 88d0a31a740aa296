import pytest
import torch

import resnetlab
from resnetlab import ResnetlabError, create_model, list_models, register_model

PAPER_PARAMS = {  # PAPER.md: torchvision (ImageNet, 1000 classes) and option A (CIFAR, 10 classes)
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
    with pytest.raises(ResnetlabError, match="bad option"):
        create_model("resnet20", shortcutt="B")
    with pytest.raises(ResnetlabError, match="shortcut"):
        create_model("resnet20", shortcut="D")


def test_register_model_adds_a_name_and_rejects_duplicates():
    @register_model(name="tiny_test_net", family="classic", default_classes=3, input_size=(1, 8, 8))
    def tiny(num_classes=3, in_channels=1):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_channels * 64, num_classes))

    assert "tiny_test_net" in list_models()
    assert create_model("tiny_test_net", in_channels=1)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="twice"):
        register_model(tiny, name="tiny_test_net")

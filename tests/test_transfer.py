import os
from pathlib import Path

import pytest
import torch
import torchvision
from fakedata import write_fashion_like
from safetensors.torch import load_file

from resnetlab import ResnetlabError, create_model
from resnetlab.train.loop import TrainConfig, train
from resnetlab.train.recipe import get_recipe
from resnetlab.transfer import (
    FrozenBatchNorm2d,
    adapt_input_channels,
    freeze,
    infer_architecture,
    initialize,
    load_source,
)

FIXED = dict(precision="fp32", channels_last="off", compile="off")
AKAMASTER = Path(__file__).resolve().parents[1] / ".." / "shared" / "pretrained" / "cifar10-akamaster"
CIFAR_JPEG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fashion_like(tmp_path / "data", n_train=128, n_test=32, size=16)
    return str(tmp_path / "data")


def tv_file(tmp_path, depth=18):
    torch.manual_seed(depth)
    sd = getattr(torchvision.models, f"resnet{depth}")().state_dict()
    path = tmp_path / f"resnet{depth}-tv.pth"
    torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_architecture_is_read_off_torchvision_keys(tmp_path, depth):
    path, _ = tv_file(tmp_path, depth)
    src = load_source(str(path))
    assert src.model == f"resnet{depth}" and src.options == {}


def test_akamaster_style_keys_map_to_the_cifar_net():
    sd = {f"module.{k}": v for k, v in create_model("resnet32").state_dict().items()}
    sd = {k.replace("module.fc.", "module.linear."): v for k, v in sd.items()}
    name, options = infer_architecture(load_source_keys(sd), "test")
    assert (name, options) == ("resnet32", {})


def load_source_keys(sd):
    from resnetlab.transfer import _normalise_keys
    return _normalise_keys(sd)


def test_finetune_from_a_torchvision_file_with_a_frozen_backbone(tmp_path, data_dir):
    path, sd = tv_file(tmp_path)
    out = tmp_path / "ft"
    cfg = TrainConfig(model="resnet18", data="fashion-mnist", data_dir=data_dir, out=str(out),
                      recipe=get_recipe("fast", epochs=2, batch_size=32, **FIXED), init_from=str(path),
                      freeze="backbone")
    train(cfg, progress=False)
    w = load_file(str(out / "model.safetensors"))
    # The grayscale first conv is the RGB filters summed over colour; nothing frozen moved,
    # BN running statistics included; the new 10-class classifier trained.
    assert torch.allclose(w["conv1.weight"], sd["conv1.weight"].sum(1, keepdim=True))
    for k, v in sd.items():
        if not k.startswith(("fc.", "conv1.")):
            assert torch.equal(w[k], v), k
    assert w["fc.weight"].shape == (10, 512)


def test_stages_freeze_only_the_stem_and_the_first_stages(tmp_path, data_dir):
    path, sd = tv_file(tmp_path)
    out = tmp_path / "ft2"
    cfg = TrainConfig(model="resnet18", data="fashion-mnist", data_dir=data_dir, out=str(out),
                      recipe=get_recipe("fast", epochs=1, batch_size=32, **FIXED), init_from=str(path),
                      freeze="stages:2", backbone_lr_mult=0.5)
    train(cfg, progress=False)
    w = load_file(str(out / "model.safetensors"))
    assert torch.equal(w["layer2.1.bn2.running_var"], sd["layer2.1.bn2.running_var"])
    assert torch.equal(w["bn1.weight"], sd["bn1.weight"])
    assert not torch.equal(w["layer3.0.conv1.weight"], sd["layer3.0.conv1.weight"])
    assert not torch.equal(w["layer4.1.bn2.running_mean"], sd["layer4.1.bn2.running_mean"])


def test_frozen_batchnorm_stays_in_eval_mode_and_grads_are_off():
    model = create_model("resnet20")
    frozen = freeze(model, "backbone")
    assert "layer3" in frozen and "fc" not in frozen
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(isinstance(m, FrozenBatchNorm2d) and not m.training for m in bns)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    with pytest.raises(ResnetlabError, match="stages"):
        freeze(create_model("resnet20"), "stages:9")
    with pytest.raises(ResnetlabError, match="--freeze"):
        freeze(create_model("resnet20"), "everything")


def test_summed_filters_see_a_gray_image_as_the_rgb_filters_see_its_colour_copy():
    w = torch.randn(8, 3, 3, 3)
    x = torch.randn(2, 1, 10, 10)
    conv = torch.nn.functional.conv2d
    assert torch.allclose(conv(x, adapt_input_channels(w, 1)), conv(x.expand(-1, 3, -1, -1), w), atol=1e-5)
    w1 = torch.randn(8, 1, 3, 3)
    assert torch.allclose(conv(x.expand(-1, 3, -1, -1), adapt_input_channels(w1, 3)), conv(x, w1), atol=1e-5)


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
    path, _ = tv_file(tmp_path, 18)
    with pytest.raises(ResnetlabError, match="does not fit"):
        initialize(create_model("resnet34", num_classes=5), load_source(str(path), model="resnet34"))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload()}, bad)
    with pytest.raises(ResnetlabError, match="weights_only"):
        load_source(str(bad))
    assert not marker.exists()


def test_torchvision_weights_offline_name_the_file_to_provide(monkeypatch):
    import torchvision.models as tvm

    weights = tvm.get_model_weights("resnet50").DEFAULT

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    with pytest.raises(ResnetlabError, match=r"download https://.*resnet50.*--from"):
        load_source("torchvision:resnet50")


def test_finetune_and_import_commands(tmp_path, data_dir, capsys):
    from resnetlab.cli import main

    path, _ = tv_file(tmp_path)
    out = tmp_path / "cli-ft"
    assert main(["finetune", "--from", str(path), "--data", "fashion-mnist", "--data-dir", data_dir,
                 "--epochs", "1", "--batch-size", "32", "--freeze", "stages:1", "--out", str(out),
                 "--precision", "fp32", "--channels-last", "off", "--compile", "off", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["import", str(out), "--data", "fashion-mnist", "--data-dir", data_dir,
                 "--normalize", "channel", "--out", str(tmp_path / "imported")]) == 0
    assert main(["eval", str(tmp_path / "imported"), "--data-dir", data_dir, "--json"]) == 0
    assert main(["finetune", "--from", str(tmp_path / "nope.pth"), "--data", "fashion-mnist"]) == 2
    assert "no such run folder" in capsys.readouterr().err


@pytest.mark.skipif(not (AKAMASTER.is_dir() and CIFAR_JPEG.is_file()),
                    reason="needs ../shared/pretrained and ../shared/data")
def test_akamaster_resnet20_scores_81_percent_on_the_cifar10_jpeg_test_set(tmp_path, monkeypatch):
    import json

    from resnetlab.train.evaluate import evaluate_run
    from resnetlab.transfer import import_run

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = next(AKAMASTER.glob("resnet20-*.th"))
    run = import_run(str(ckpt), tmp_path / "aka", str(CIFAR_JPEG), normalize="imagenet")
    assert json.loads((run / "config.json").read_text())["config"]["model"] == "resnet20"
    r = evaluate_run(run, device="cpu")
    # shared/data/README.md: 81.0% on these JPEG test images with ImageNet mean/std.
    assert abs((1 - r["top1_error"]) - 0.810) <= 0.01

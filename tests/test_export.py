"""resnetlab.export: BatchNorm folding, ONNX (checked in the real onnxruntime) and TorchScript."""

import json

import pytest
import torch
from fakedata import write_class_folder
from torch import nn

from resnetlab import ResnetlabError, create_model
from resnetlab.data.decode import decode_image
from resnetlab.export import WithPreprocess, export, export_onnx, run_onnx
from resnetlab.models.fold import conv_bn_pairs, fold_batchnorm
from resnetlab.predict import load_run
from resnetlab.train.loop import TrainConfig, train
from resnetlab.train.recipe import get_recipe

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def run_dir(tiny):
    return tiny[0]


# Two fp32 computations of the same network (folded vs unfolded, onnxruntime vs PyTorch) differ by
# rounding in sums taken in another order, which scales with the logits and depends on the CPU's
# kernels: measured ~5e-7 of the logits' scale for ResNet-18 at 224 (Zen 4). The bounds are relative
# to that scale, with a margin of over 10x; a wrong fold or export is off by far more.
FOLD_RTOL, ONNX_RTOL = 1e-5, 1e-4
EXPORTERS = ("dynamo", "torchscript-based")    # export_onnx falls back to the legacy exporter


def assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = max(1.0, expected.abs().max().item())
    diff = (got - expected).abs().max().item()
    assert diff <= rtol * scale, f"max difference {diff:.3g} with logits up to {scale:.3g}"


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.4 + 0.6)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name,options,size", [
    ("resnet18", {}, 64),
    ("resnet50", {}, 32),                      # bottlenecks, projection shortcuts downsample.0/.1
    ("resnet50", {"shortcut": "C"}, 32),       # a projection on every block
    ("resnet8", {}, 12),                       # CIFAR net, option A (no downsample convs)
    ("plain18", {}, 64),
])
def test_folding_is_exact_and_leaves_no_batchnorm(name, options, size):
    model = randomize_batchnorm(create_model(name, num_classes=10, **options))
    model.train()   # fold_batchnorm must not depend on (or change) the model's mode
    folded = fold_batchnorm(model)
    assert model.training and batchnorms(model) > 0        # the original is untouched
    assert not folded.training and batchnorms(folded) == 0
    pairs = dict(conv_bn_pairs(model.eval()))
    assert pairs["conv1"] == "bn1"                          # the stem
    if name == "resnet50":
        assert pairs["layer2.0.downsample.0"] == "layer2.0.downsample.1"
        assert isinstance(folded.layer2[0].downsample[1], nn.Identity)
        assert folded.layer2[0].downsample[0].bias is not None
    x = torch.randn(2, model.conv1.in_channels, size, size)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert_close(got, expected, FOLD_RTOL)


def test_a_convolution_read_elsewhere_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn2(self.conv2(self.bn(y) + y))

    model = randomize_batchnorm(Shared())
    folded = fold_batchnorm(model)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.Identity)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_untraceable_models_fold_their_sequential_pairs():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
            self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            x = self.stem(x)
            if x.sum() > 0:   # data-dependent: torch.fx cannot trace this
                x = x * 2
            return self.bn(self.conv(x))

    model = randomize_batchnorm(Dynamic())
    assert conv_bn_pairs(model) == [("stem.0", "stem.1")]
    folded = fold_batchnorm(model)
    assert isinstance(folded.stem[1], nn.Identity) and isinstance(folded.bn, nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_onnx_of_a_tiny_run_agrees_with_pytorch_in_onnxruntime(run_dir, tmp_path):
    out = tmp_path / "r8.onnx"
    r = export(run_dir, out)
    assert r["exporter"] in EXPORTERS and r["check"]["checked"]
    assert r["batchnorm_folded"] == 7
    sidecar = json.loads((tmp_path / "r8.onnx.json").read_text())
    saved = json.loads((run_dir / "config.json").read_text())
    assert sidecar["classes"] == saved["classes"] and sidecar["num_classes"] == 10
    assert sidecar["input"] == {"name": "input", "shape": ["batch", 1, 12, 12], "dtype": "float32",
                                "layout": "NCHW"}
    pre = sidecar["preprocess"]
    assert pre["included"] is False and pre["channels"] == "gray"
    assert pre["geometry"] == {"mode": "resize", "size": [12, 12]}
    run = load_run(run_dir)
    assert pre["mean"] == pytest.approx(run.normalizer.mean.flatten().tolist())
    assert pre["std"] == pytest.approx(run.normalizer.std.flatten().tolist())
    assert not (tmp_path / "r8.onnx.data").exists()    # one self-contained file
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    for batch in (1, 3):    # the batch axis is dynamic
        x = torch.randn(batch, 1, 12, 12)
        with torch.no_grad():
            expected = run.model(x)
        assert_close(run_onnx(out, x), expected, ONNX_RTOL)


def test_onnx_of_imagenet_resnet18_at_224_agrees_with_pytorch(tmp_path):
    model = randomize_batchnorm(create_model("resnet18"))
    folded = fold_batchnorm(model)
    x = torch.randn(2, 3, 224, 224)
    assert export_onnx(folded, x, tmp_path / "r18.onnx") in EXPORTERS
    with torch.no_grad():
        expected = model(x)
    got = run_onnx(tmp_path / "r18.onnx", x, threads=2)
    assert got.shape == (2, 1000)
    assert_close(got, expected, ONNX_RTOL)


def test_onnx_with_preprocessing_takes_uint8_pixels(run_dir, tmp_path):
    out = tmp_path / "pre.onnx"
    r = export(run_dir, out, include_preprocess=True, batch=3, opset=18)
    assert r["input"]["dtype"] == "uint8" and r["input"]["shape"] == [3, 1, 12, 12] and r["opset"] == 18
    assert r["preprocess"]["included"] is True
    graph_input = onnx.load(str(out)).graph.input[0]
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [3, 1, 12, 12]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    run = load_run(run_dir)
    pixels = torch.randint(0, 256, (3, 1, 12, 12), dtype=torch.uint8)
    with torch.no_grad():
        expected = run.model(torch.stack([run.prepare(p) for p in pixels]))
    assert_close(run_onnx(out, pixels), expected, ONNX_RTOL)


def test_onnx_of_a_center_crop_run_with_a_per_pixel_mean(tmp_path, monkeypatch):
    """An RGB run on 24x24 images trained on 16x16 crops, evaluated on the centre view."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_class_folder(tmp_path / "images", {"a": 12, "b": 12}, size=(24, 24))
    recipe = get_recipe("fast", precision="fp32", channels_last="off", compile="off", epochs=1, batch_size=8,
                        crop_size=16, augment="scale-crop-flip", eval_view="center", normalize="pixel-mean")
    train(TrainConfig(model="resnet8", data=str(tmp_path / "images"), out=str(tmp_path / "run"),
                      recipe=recipe), progress=False)
    r = export(tmp_path / "run", tmp_path / "crop.onnx", include_preprocess=True)
    assert r["input"]["shape"] == ["batch", 3, 16, 16] and r["preprocess"]["channels"] == "RGB"
    assert r["preprocess"]["geometry"] == {"mode": "resize-shorter-center-crop", "shorter_side": 18,
                                           "crop": [16, 16]}
    assert r["preprocess"]["mean_shape"] == [3, 16, 16]
    run = load_run(tmp_path / "run")
    pixels = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)   # already resized and cropped
    norm = run.input_normalizer()
    with torch.no_grad():
        expected = run.model((pixels.float() / 255 - norm.mean) / norm.std)
    assert_close(run_onnx(tmp_path / "crop.onnx", pixels), expected, ONNX_RTOL)


def test_onnx_of_a_flip_run_is_the_single_view_and_says_the_mirror_is_averaged(tiny_flip, tmp_path):
    run_dir = tiny_flip[0]
    r = export(run_dir, tmp_path / "flip.onnx", include_preprocess=True)
    pre = r["preprocess"]
    assert r["check"]["checked"] and r["input"]["shape"] == ["batch", 1, 12, 12]
    assert pre["eval_view"] == "flip" and pre["geometry"] == {"mode": "resize", "size": [12, 12]}
    assert any("horizontal mirror, averaging their softmax" in step for step in pre["steps"])
    run = load_run(run_dir)
    pixels = torch.randint(0, 256, (2, 1, 12, 12), dtype=torch.uint8)
    with torch.no_grad():   # the file is the network on one view; the caller averages the two
        expected = run.model(torch.stack([run.prepare(p, crops=False) for p in pixels]))
    assert_close(run_onnx(tmp_path / "flip.onnx", pixels), expected, ONNX_RTOL)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_round_trip(run_dir, tmp_path):
    out = tmp_path / "r8.pt"
    r = export(run_dir, out, format="torchscript")
    assert r["check"]["checked"]
    assert json.loads((tmp_path / "r8.pt.json").read_text())["format"] == "torchscript"
    loaded = torch.jit.load(str(out))
    run = load_run(run_dir)
    x = torch.randn(5, 1, 12, 12)    # another batch size than the traced one
    with torch.no_grad():
        assert_close(loaded(x), run.model(x), FOLD_RTOL)
    out = tmp_path / "pre.pt"
    export(run_dir, out, format="torchscript", include_preprocess=True)
    pixels = torch.randint(0, 256, (2, 1, 12, 12), dtype=torch.uint8)
    with torch.no_grad():
        expected = WithPreprocess(run.model, run.input_normalizer())(pixels)
        assert_close(torch.jit.load(str(out))(pixels), expected, FOLD_RTOL)


def test_export_of_a_checkpoint_folder(run_dir, tmp_path):
    ckpt = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    r = export(ckpt, tmp_path / "early.onnx")
    assert r["weights"] == str(ckpt / "model.safetensors") and r["run"] == str(run_dir)
    early, final = load_run(ckpt), load_run(run_dir)
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "early.onnx", x), early.model(x), ONNX_RTOL)
        assert not torch.allclose(early.model(x), final.model(x))


def test_onnx_matches_predict_on_a_real_image_file(run_dir, tmp_path):
    from PIL import Image

    from resnetlab.predict import predict

    path = tmp_path / "x.png"
    Image.new("RGB", (40, 25), (200, 40, 90)).save(path)
    export(run_dir, tmp_path / "m.onnx", check=False)
    run = load_run(run_dir)
    x = run.prepare(decode_image(path.read_bytes()))[None]
    probs = run_onnx(tmp_path / "m.onnx", x).softmax(1)[0]
    top = predict(run, [path], topk=1, device="cpu")[0]["predictions"][0]
    assert top["index"] == probs.argmax().item()
    assert top["probability"] == pytest.approx(probs.max().item(), abs=1e-5)


def test_the_torchscript_based_exporter_is_the_fallback(run_dir, tmp_path, monkeypatch):
    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated failure of the dynamo exporter")
        return real(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    r = export(run_dir, tmp_path / "legacy.onnx")
    assert r["exporter"] == "torchscript-based" and r["check"]["checked"]
    x = torch.randn(3, 1, 12, 12)   # the batch axis is dynamic here too
    with torch.no_grad():
        assert_close(run_onnx(tmp_path / "legacy.onnx", x), load_run(run_dir).model(x), ONNX_RTOL)


@pytest.mark.parametrize("kwargs,message", [
    ({"format": "tflite"}, "unknown export format 'tflite'"),
    ({"format": "torchscript", "opset": 17}, "--opset applies to --format onnx only"),
    ({"batch": "many"}, "--batch must be 'dynamic' or a positive batch size"),
    ({"batch": "0"}, "--batch must be"),
])
def test_bad_options_are_user_errors(run_dir, tmp_path, kwargs, message):
    with pytest.raises(ResnetlabError, match=message):
        export(run_dir, tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(ResnetlabError, match="not found"):
        export(tmp_path / "nope", tmp_path / "x.onnx")

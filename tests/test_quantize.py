"""resnetlab.quantize: static int8 export in onnxruntime, calibrated on the run's own training images."""

import json

import pytest
import torch
from fakedata import write_image

from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.export import export
from resnetlab.exported import evaluate_exported
from resnetlab.predict import load_run
from resnetlab.quantize import calibration_inputs

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tiny):
    return tiny[0]


def op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_calibration_inputs_are_the_evaluation_inputs(run_dir, tiny):
    from resnetlab.data import load_dataset

    run = load_run(run_dir)
    x = calibration_inputs(run, 40, pixels=False)
    train = load_dataset("fashion-mnist", data_dir=tiny[1]).train
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:40].sort().values
    norm = run.input_normalizer()
    assert torch.allclose(x, (train.images[index].float() / 255 - norm.mean) / norm.std)
    assert torch.equal(calibration_inputs(run, 40, pixels=True), train.images[index])


def test_a_flip_run_is_calibrated_on_its_images_and_their_mirrors(tiny_flip):
    from resnetlab.data import load_dataset

    run = load_run(tiny_flip[0])
    x, pixels = calibration_inputs(run, 8, pixels=False), calibration_inputs(run, 8, pixels=True)
    train = load_dataset("fashion-mnist", data_dir=tiny_flip[1]).train
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:8].sort().values
    images = train.images[index]
    assert torch.equal(pixels, torch.cat([images, images.flip(-1)]))
    norm = run.input_normalizer()    # a per-pixel mean: each image is normalised, then mirrored
    inputs = (images.float() / 255 - norm.mean) / norm.std
    assert x.shape == (16, 1, 12, 12) and torch.allclose(x, torch.cat([inputs, inputs.flip(-1)]), atol=1e-6)


@pytest.mark.parametrize("pixels,batch,activations", [(False, "dynamic", "uint8"), (True, "8", "uint8"),
                                                     (False, "dynamic", "int8")])
def test_int8_export_end_to_end(run_dir, tmp_path, pixels, batch, activations):
    r = export(run_dir, tmp_path / "q.onnx", quantize="int8", calibration=64, include_preprocess=pixels,
               batch=batch, activations=activations)
    assert r["precision"] == "int8" and r["quantization"]["format"] == "QDQ"
    assert r["quantization"]["calibration"]["images"] == 64
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(tmp_path / "q.onnx")
    side = json.loads((tmp_path / "q.onnx.json").read_text())
    assert side["precision"] == "int8" and side["quantization"] == r["quantization"]
    # The int8 file scores like the fp32 one on most inputs; its accuracy is what `eval` reports.
    assert r["check"]["checked"] and r["check"]["top1_agreement"] >= 0.75
    got = evaluate_exported(tmp_path / "q.onnx")
    assert got["precision"] == "int8" and got["n"] == 64 and 0 <= got["top1_error"] <= 1


def test_quantize_cli_then_eval_and_predict(run_dir, tmp_path, capsys):
    image = write_image(tmp_path / "x.png", size=(30, 20))
    assert main(["export", str(run_dir), "--out", str(tmp_path / "q.onnx"), "--quantize", "int8",
                 "--calibration", "32", "--calibration-method", "percentile"]) == 0
    out = capsys.readouterr().out
    assert "int8" in out and "top-1 class agrees" in out
    assert main(["eval", str(tmp_path / "q.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "int8"
    assert main(["predict", str(tmp_path / "q.onnx"), str(image), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    probs = [p["probability"] for p in result["predictions"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


@pytest.mark.parametrize("kwargs,message", [
    ({"quantize": "int4"}, "--quantize must be int8"),
    ({"quantize": "int8", "format": "torchscript"}, "--quantize applies to --format onnx only"),
    ({"quantize": "int8", "calibration": 0}, "--calibration must be 1 or more"),
    ({"quantize": "int8", "calibration": 4, "batch": "8"}, "less than the file's fixed batch 8"),
    ({"quantize": "int8", "calibration_method": "median"}, "--calibration-method must be one of"),
])
def test_bad_quantize_options_are_user_errors(run_dir, tmp_path, kwargs, message):
    with pytest.raises(ResnetlabError, match=message):
        export(run_dir, tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()

import json

import pytest
import torch

from resnetlab.cli import main
from resnetlab.export import run_onnx
from resnetlab.predict import load_run

pytest.importorskip("onnxruntime")



@pytest.fixture(scope="module")
def run_dir(tiny):
    return tiny[0]


def test_export_onnx_writes_the_model_and_its_contract(run_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "r8.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dynamo exporter" in text or "torchscript-based exporter" in text   # the fallback is fine
    assert "7 BatchNorm layers folded" in text
    assert "check: onnxruntime agrees with PyTorch" in text and "(pixel / 255 - mean) / std" in text
    sidecar = json.loads((tmp_path / "sub" / "r8.onnx.json").read_text())
    assert sidecar["input"]["shape"] == ["batch", 1, 12, 12] and len(sidecar["classes"]) == 10
    run = load_run(run_dir)
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        expected = run.model(x)
    # fp32 rounding scales with the logits: the bound does too (see tests/test_export.py)
    assert (run_onnx(out, x) - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_torchscript_of_a_checkpoint_as_json(run_dir, tmp_path, capsys):
    ckpt = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    out = tmp_path / "r8.pt"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(out), "--include-preprocess",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["format"] == "torchscript" and r["input"]["dtype"] == "uint8" and r["check"]["checked"]
    assert r["weights"] == str(ckpt / "model.safetensors")
    loaded = torch.jit.load(str(out))
    assert loaded(torch.zeros(3, 1, 12, 12, dtype=torch.uint8)).shape == (3, 10)


@pytest.mark.parametrize("argv,message", [
    (["{run}", "--format", "tflite", "--out", "{tmp}/x"], "unknown export format 'tflite'"),
    (["{tmp}/missing", "--out", "{tmp}/x.onnx"], "not found"),
    (["{tmp}", "--out", "{tmp}/x.onnx"], "not a run folder"),
    (["{run}"], "export needs --out"),
    (["{run}", "--out", "{tmp}/x.onnx", "--batch", "lots"], "--batch must be"),
    (["{run}", "--out", "{tmp}/x.pt", "--format", "torchscript", "--opset", "17"], "--opset applies"),
])
def test_user_errors_are_one_line(run_dir, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "x.onnx").exists()

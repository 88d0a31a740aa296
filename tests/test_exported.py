"""resnetlab.exported: an exported ONNX file as a run for `eval` and `predict` (real onnxruntime)."""

import json

import pytest
import torch
from fakedata import write_class_folder, write_image

from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.export import export
from resnetlab.exported import evaluate_exported, load_exported
from resnetlab.predict import predict
from resnetlab.train.evaluate import evaluate_run
from resnetlab.train.loop import TrainConfig, train
from resnetlab.train.recipe import get_recipe

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def run_dir(tiny):
    return tiny[0]


def same_evaluation(a: dict, b: dict) -> None:
    # Two fp32 computations of one network (folded in onnxruntime vs PyTorch) differ only by rounding,
    # so every count agrees; the mean loss to rounding.
    for key in ("n", "top1_error", "top5_error", "confusion_matrix", "per_class_accuracy", "classes"):
        assert a[key] == b[key], key
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


@pytest.mark.parametrize("batch,pixels", [("dynamic", False), ("5", False), ("dynamic", True)])
def test_eval_of_an_fp32_file_is_the_eval_of_its_run(run_dir, tmp_path, batch, pixels):
    # 5 does not divide the 64 test images; `pixels`: the file normalises uint8 input itself (exact
    # here, where the images need no resizing)
    export(run_dir, tmp_path / "m.onnx", batch=batch, include_preprocess=pixels)
    got = evaluate_exported(tmp_path / "m.onnx")
    same_evaluation(got, evaluate_run(run_dir, device="cpu"))
    assert got["precision"] == "fp32" and got["model"] == "resnet8" and got["data"] == "fashion-mnist"


@pytest.mark.parametrize("view,normalize", [("center", "pixel-mean"), ("ten-crop", "channel")])
def test_eval_of_a_cropped_view(tmp_path, monkeypatch, view, normalize):
    """Geometry, a per-pixel mean map and crop averaging all come from the sidecar. (A ten-crop run
    with a per-pixel mean is not exact: the sidecar's map is the centre crop's, see exported.py.)"""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_class_folder(tmp_path / "images", {"a": 12, "b": 12}, size=(24, 24))
    recipe = get_recipe("fast", precision="fp32", channels_last="off", compile="off", epochs=1, batch_size=8,
                        crop_size=16, augment="scale-crop-flip", eval_view=view, normalize=normalize)
    train(TrainConfig(model="resnet8", data=str(tmp_path / "images"), out=str(tmp_path / "run"),
                      recipe=recipe), progress=False)
    # float input: a file that takes uint8 pixels gets the resized image rounded to whole pixels, a
    # (small) departure from the run's own evaluation, which resizes floats
    export(tmp_path / "run", tmp_path / "crop.onnx")
    same_evaluation(evaluate_exported(tmp_path / "crop.onnx"), evaluate_run(tmp_path / "run", device="cpu"))


def test_eval_and_predict_of_a_flip_run_average_the_mirror_as_the_run_does(tiny_flip, tmp_path):
    """The mirror's per-pixel mean is mirrored too (the normalisation outside the file): exact."""
    run_dir, data_dir = tiny_flip
    export(run_dir, tmp_path / "flip.onnx")
    run = load_exported(tmp_path / "flip.onnx")
    assert run.view == "flip" and run.geometry == {"mode": "resize", "size": [12, 12], "flip": True}
    same_evaluation(evaluate_exported(tmp_path / "flip.onnx"), evaluate_run(run_dir, device="cpu"))
    images = [write_image(tmp_path / f"{i}.png", size=(12, 12), seed=i) for i in range(3)]
    ours, theirs = predict(run_dir, images, topk=3, device="cpu"), predict(run, images, topk=3, device="cpu")
    for a, b in zip(ours, theirs, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5)


def test_predict_with_a_file_is_predict_with_its_run(run_dir, tmp_path):
    images = [write_image(tmp_path / f"{i}.png", size=(20 + i, 15), seed=i) for i in range(3)]
    export(run_dir, tmp_path / "m.onnx")
    ours = predict(run_dir, images, topk=3, device="cpu")
    theirs = predict(load_exported(tmp_path / "m.onnx"), images, topk=3, device="cpu")
    for a, b in zip(ours, theirs, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5)


def test_the_cli_treats_a_file_as_a_run(run_dir, tmp_path, capsys):
    image = write_image(tmp_path / "x.png", size=(12, 12))
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "m.onnx"), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run_dir), "--json"]) == 0
    same_evaluation(ours, json.loads(capsys.readouterr().out))
    assert main(["predict", str(tmp_path / "m.onnx"), str(image), "--json", "--topk", "2"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["file"] == str(image) and len(result["predictions"]) == 2


def _one_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_a_missing_or_foreign_sidecar_is_one_clear_error(run_dir, tmp_path, capsys):
    export(run_dir, tmp_path / "m.onnx")
    side = tmp_path / "m.onnx.json"
    good = json.loads(side.read_text())
    image = str(write_image(tmp_path / "x.png"))

    side.unlink()
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "has no sidecar m.onnx.json")
    _one_error(capsys, ["predict", str(tmp_path / "m.onnx"), image], "has no sidecar m.onnx.json")
    side.write_text("{not json")
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "cannot be read as JSON")
    side.write_text(json.dumps({"format": "onnx"}))
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "is not an export sidecar (no classes")
    side.write_text(json.dumps({**good, "input": {**good["input"], "shape": ["batch", 3, 32, 32]}}))
    _one_error(capsys, ["predict", str(tmp_path / "m.onnx"), image],
               "does not match the file (input batchx3x32x32")
    side.write_text(json.dumps({**good, "classes": ["a", "b"]}))
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "2 classes in the sidecar, 10 outputs in the file")
    side.write_text(json.dumps({**good, "input": {**good["input"], "dtype": "uint8"}}))
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "input dtype uint8 in the sidecar")
    side.write_text(json.dumps(good))
    (tmp_path / "m.onnx").write_bytes(b"not an onnx file")
    _one_error(capsys, ["eval", str(tmp_path / "m.onnx")], "onnxruntime cannot load it")
    _one_error(capsys, ["eval", str(tmp_path / "none.onnx")], "no such file")


def test_an_older_sidecar_without_the_data_set_needs_data(run_dir, tmp_path, tiny):
    export(run_dir, tmp_path / "m.onnx")
    side = tmp_path / "m.onnx.json"
    meta = json.loads(side.read_text())
    del meta["data"]
    side.write_text(json.dumps(meta))
    with pytest.raises(ResnetlabError, match="give --data"):
        evaluate_exported(tmp_path / "m.onnx")
    got = evaluate_exported(tmp_path / "m.onnx", data="fashion-mnist", data_dir=tiny[1])
    assert got["n"] == 64


def test_a_file_with_the_wrong_data_set_is_refused(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_class_folder(tmp_path / "rgb", {"a": 4, "b": 4, "c": 4}, size=(12, 12))
    export(run_dir, tmp_path / "m.onnx")
    with pytest.raises(ResnetlabError, match="does not match m.onnx"):
        evaluate_exported(tmp_path / "m.onnx", data=str(tmp_path / "rgb"))


def test_outputs_are_torch_tensors_of_the_batch(run_dir, tmp_path):
    export(run_dir, tmp_path / "m.onnx", batch="4")
    run = load_exported(tmp_path / "m.onnx")
    out = run.model(torch.zeros(6, 1, 12, 12))   # a fixed-batch file fed 4 + 2 (padded)
    assert out.shape == (6, 10) and out.dtype == torch.float32
    assert torch.allclose(out[4:], out[:2])

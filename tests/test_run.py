"""The run folder (resnetlab.run): the record round-trips, the one rule for finding a run, and a
run folder written by an older resnetlab still serves eval, predict, export and resume.

tests/fixtures/run-62bb55d is a resnet8 run written by the code at commit 62bb55d on tiny
Fashion-MNIST-format data (`write_fashion_like("data", n_train=256, n_test=64, size=12)`, run with
`--data fashion-mnist --data-dir data --epochs 2 --batch-size 32 --checkpoint-every 4 --seed 5`),
stopped after its step-12 checkpoint of 16 steps (final weights and summary removed, as a crash
would leave it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakedata import write_fashion_like
from PIL import Image

from resnetlab.cli import main
from resnetlab.errors import ResnetlabError
from resnetlab.run import CONFIG, Run, RunRecord, find_run, load_trained

FIXTURE = Path(__file__).parent / "fixtures" / "run-62bb55d"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    """The old run folder in a scratch directory, next to the data it was trained on (its config
    names the data folder relatively: `--data-dir data`)."""
    monkeypatch.chdir(tmp_path)
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_record_loads_typed_and_writes_back_the_same_keys():
    raw = json.loads((FIXTURE / CONFIG).read_text())
    record = Run(FIXTURE).record()
    assert record.config.model == "resnet8" and record.config.seed == 5
    assert record.input_size == (1, 12, 12) and record.num_classes == 10 and record.channels == 1
    assert record.engine.precision == "fp32" and record.total_steps == 16
    again = record.to_dict()
    assert set(raw) <= set(again)
    for key in set(raw) - {"config", "engine"}:
        assert again[key] == raw[key], key
    assert RunRecord.from_dict(again) == record


def test_find_run_names_the_weights_a_path_means(old_run):
    ckpt = old_run / "checkpoints" / "step-00000012"
    run, weights = find_run(old_run)      # unfinished: its latest checkpoint
    assert run.root == old_run and weights == ckpt / "model.safetensors"
    assert find_run(ckpt)[1] == ckpt / "model.safetensors"
    assert not run.finished() and run.started() and run.latest_checkpoint().step == 12
    with pytest.raises(ResnetlabError, match="not a run folder"):
        find_run(old_run / "checkpoints")
    with pytest.raises(ResnetlabError, match="is a file"):
        find_run(old_run / CONFIG)
    with pytest.raises(ResnetlabError, match="no such run folder"):
        Run.open(old_run / "missing")


def test_an_old_run_folder_serves_eval_predict_export_and_resume(old_run, tmp_path, capsys):
    model, record, _ = load_trained(old_run)
    assert record.config.model == "resnet8" and model.fc.out_features == 10

    assert main(["eval", str(old_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 64 and 0 <= result["top1_error"] <= 1

    image = tmp_path / "x.png"
    Image.new("L", (12, 12), 120).save(image)
    assert main(["predict", str(old_run), str(image), "--json", "--topk", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["predictions"]) == 2

    pytest.importorskip("onnxruntime")
    assert main(["export", str(old_run), "--format", "onnx", "--out", str(tmp_path / "r8.onnx")]) == 0
    assert (tmp_path / "r8.onnx.json").is_file()
    capsys.readouterr()

    assert main(["train", "--resume", str(old_run), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err
    summary = Run(old_run).summary()
    assert summary["steps"] == 16 and (old_run / "model.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 16    # the records after step 12 were written again

import json

import pytest
from fakedata import write_fashion_like

from resnetlab.cli import main

FIXED = ["--precision", "fp32", "--channels-last", "off", "--compile", "off", "--no-progress"]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    return str(tmp_path / "data")


def test_train_then_eval_json(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", data_dir,
                 "--epochs", "4", "--batch-size", "32", "--out", str(out), "--json", *FIXED]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 32 and 0 <= summary["test_top1_error"] <= 1
    assert main(["eval", str(out), "--data-dir", data_dir, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert 0 <= r["top1_error"] <= r["top5_error"] + 1 and 0 <= r["top5_error"] <= 1
    assert r["top1_error"] == pytest.approx(summary["test_top1_error"])
    assert r["n"] == 64 and sum(map(sum, r["confusion_matrix"])) == 64
    assert len(r["per_class_accuracy"]) == 10 and "T-shirt/top" in r["per_class_accuracy"]
    assert main(["eval", str(out), "--data-dir", data_dir]) == 0
    text = capsys.readouterr().out
    assert "top-1 error" in text and "confusion matrix" in text


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet21"], "unknown model 'resnet21'"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--iterations", "0"], "run length must be positive"),
])
def test_bad_train_flags_are_one_error_line(tmp_path, data_dir, capsys, argv, message):
    base = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", data_dir,
            "--out", str(tmp_path / "r"), *FIXED]
    base[2] = argv[1] if argv[0] == "--model" else base[2]
    args = base + ([] if argv[0] == "--model" else argv)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_missing_data_set_is_one_error_line(tmp_path, capsys, monkeypatch):
    import resnetlab.data.known as sources

    def offline(url, dest):
        raise OSError("network unreachable")

    monkeypatch.setattr(sources, "_download_file", offline)
    monkeypatch.setattr(sources, "SYSTEM_ROOTS", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RESNETLAB_DATA", raising=False)
    assert main(["train", "--model", "resnet8", "--data", "cifar100", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "r"), *FIXED]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "cifar" in err[0].lower()


def test_resume_of_a_non_run_folder(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_resume_refuses_flags_that_would_change_the_run(tmp_path, capsys):
    # A flag that changes what the run computes is named, not silently dropped; launch and display
    # flags are taken (checked before the folder is read, so a bare folder is enough here).
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.5", "--epochs=3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr, --epochs cannot be given with it" in err[0]
    assert main(["train", "--resume", str(tmp_path), "--no-progress", "--json"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_every_recipe_field_is_a_flag():
    import dataclasses

    from resnetlab.cli import build_parser
    from resnetlab.train.recipe import Recipe

    p = build_parser()
    args = p.parse_args(["train", "--model", "resnet8", "--data", "x", "--gamma", "0.2", "--eval-view",
                         "ten-crop", "--warmup-lr", "0.01", "--no-nesterov", "--milestones", "0.3", "0.6"])
    from resnetlab.cli.flags import recipe_overrides

    assert recipe_overrides(args) == {"gamma": 0.2, "eval_view": "ten-crop", "warmup_lr": 0.01,
                                      "nesterov": False, "milestones": [0.3, 0.6]}
    helptext = p._subparsers._group_actions[0].choices["train"].format_help()
    for f in dataclasses.fields(Recipe):
        if f.name != "name":
            assert "--" + f.name.replace("_", "-") in helptext, f.name
    with pytest.raises(SystemExit):   # allowed values come from the field: argparse refuses others
        p.parse_args(["train", "--eval-view", "nine-crop"])


def test_seeds_train_one_folder_each_then_reuse_and_resume(tmp_path, data_dir, capsys):
    out = tmp_path / "seeds"
    argv = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", data_dir, "--epochs", "1",
            "--batch-size", "32", "--out", str(out), "--seeds", "3", "--seed", "5", *FIXED]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "over 3 seeds (seed 5: " in text and "seed 7: " in text
    r = json.loads((out / "seeds.json").read_text())
    assert r["seeds"] == [5, 6, 7] and [json.loads((out / f"seed-{s}" / "config.json").read_text())["config"]
                                        ["seed"] for s in (5, 6, 7)] == [5, 6, 7]
    values = [r["per_seed"][str(s)]["test_top1_error"] for s in (5, 6, 7)]
    err = r["test_top1_error"]
    assert err["values"] == values and err["n"] == 3
    assert err["mean"] == pytest.approx(sum(values) / 3)
    assert err["std"] == pytest.approx((sum((v - err["mean"]) ** 2 for v in values) / 2) ** 0.5)
    # different seeds: different initialisation and data order, so different weights
    w = [(out / f"seed-{s}" / "model.safetensors").read_bytes() for s in (5, 6, 7)]
    assert len(set(w)) == 3

    # again: finished seeds are reused (nothing retrained); an unfinished one resumes
    (out / "seed-6" / "model.safetensors").unlink()
    (out / "seed-6" / "summary.json").unlink()
    before = (out / "seed-5" / "metrics.jsonl").read_text()
    assert main(argv + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_top1_error"]["values"] == pytest.approx(values)
    assert (out / "seed-5" / "metrics.jsonl").read_text() == before
    assert (out / "seed-6" / "model.safetensors").exists()


def test_seeds_flag_errors(tmp_path, data_dir, capsys):
    base = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", data_dir,
            "--out", str(tmp_path / "s"), *FIXED]
    for extra, message in ((["--seeds", "0"], "--seeds N needs N >= 1"), (["--seeds", "1", "1"], "twice"),
                           (["--seeds", "2", "--resume", str(tmp_path)], "do not go together")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


def test_eval_view_flip_averages_the_image_and_its_mirror(tmp_path, data_dir, capsys):
    """`eval --eval-view flip` on a run trained without it: the loss is that of the mean of the two
    softmaxes (the image and its mirror), computed here by hand from the saved weights."""
    import torch

    from resnetlab.data.open import open_data
    from resnetlab.run import load_trained

    out = tmp_path / "run"
    assert main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", data_dir,
                 "--epochs", "2", "--batch-size", "32", "--out", str(out), *FIXED]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data-dir", data_dir, "--eval-view", "flip", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["eval_view"] == "flip" and r["n"] == 64
    model, record, normalizer = load_trained(out, torch.device("cpu"))
    test = open_data("fashion-mnist", data_dir=data_dir).test
    x = normalizer(test.images)
    with torch.no_grad():
        p = (model(x).float().softmax(1) + model(x.flip(-1)).float().softmax(1)) / 2
    assert r["loss"] == pytest.approx(float(-p[torch.arange(64), test.labels].log().mean()), rel=1e-4)
    assert r["top1_error"] == pytest.approx(float((p.argmax(1) != test.labels).float().mean()))
    assert main(["eval", str(out), "--data-dir", data_dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval_view"] == "none"


def test_a_failed_many_process_seeds_run_says_to_rerun_the_command(tmp_path, data_dir, capsys, monkeypatch):
    import subprocess

    # torchrun fails at once (exit 1): the hint must not be `--resume OUT`, which refuses --seeds
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1))
    code = main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(data_dir),
                 "--epochs", "1", "--seeds", "2", "--nproc", "2", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "the 2-process run stopped" in err
    assert "run the same command again" in err and "--resume" not in err

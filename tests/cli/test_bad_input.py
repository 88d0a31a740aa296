"""Bad input through the command line: one `error:` line naming the problem and the fix, exit code
2, and nothing already written lost."""

import gzip
import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest
from fakedata import FASHION_FILES, write_fashion_like

from resnetlab.cli import main

FIXED = ["--precision", "fp32", "--channels-last", "off", "--compile", "off", "--no-progress"]


pytestmark = pytest.mark.usefixtures("isolated")


def one_error(capsys, *fragments):
    """Exactly one `error:` line, the last thing printed (a run may log its start before it)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def train(data_dir, out, *extra):
    return main(["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(data_dir),
                 "--epochs", "1", "--batch-size", "32", "--out", str(out), *FIXED, *extra])


@pytest.fixture
def good(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=128, n_test=32, size=12)
    return tmp_path / "data"


def test_truncated_idx_file(tmp_path, good, capsys):
    f = good / "fashion-mnist" / FASHION_FILES["train"][0]
    data = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(data[:-100]))
    assert train(good, tmp_path / "r") == 2
    one_error(capsys, FASHION_FILES["train"][0])


def test_wrong_magic_idx_file(tmp_path, good, capsys):
    f = good / "fashion-mnist" / FASHION_FILES["test"][1]
    data = bytearray(gzip.decompress(f.read_bytes()))
    data[0] = 7
    f.write_bytes(gzip.compress(bytes(data)))
    assert train(good, tmp_path / "r") == 2
    one_error(capsys, FASHION_FILES["test"][1])


def test_cifar_batch_with_wrong_shape(tmp_path, capsys):
    root = tmp_path / "cifar" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    good = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps(good))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8),
                                                      b"labels": [0, 1, 2, 3]}))
    assert main(["train", "--model", "resnet8", "--data", "cifar10", "--data-dir", str(tmp_path / "cifar"),
                 "--out", str(tmp_path / "r"), *FIXED]) == 2
    one_error(capsys, "data_batch_3")


def test_image_folder_without_classes(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--model", "resnet8", "--data", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "r"), *FIXED]) == 2
    one_error(capsys, "empty")


def test_checkpoint_of_another_architecture_or_class_count(tmp_path, good, capsys):
    assert train(good, tmp_path / "a") == 0
    assert main(["train", "--model", "resnet14", "--data", "fashion-mnist", "--data-dir", str(good),
                 "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path / "b"), *FIXED]) == 0
    capsys.readouterr()
    before = (tmp_path / "a" / "summary.json").read_text()
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    assert main(["eval", str(tmp_path / "a"), "--data-dir", str(good)]) == 2
    one_error(capsys, "does not fit", "another architecture or class count")
    assert (tmp_path / "a" / "summary.json").read_text() == before


def test_corrupt_weights_file(tmp_path, good, capsys):
    assert train(good, tmp_path / "a") == 0
    capsys.readouterr()
    (tmp_path / "a" / "model.safetensors").write_bytes(b"\x00" * 50)
    assert main(["eval", str(tmp_path / "a"), "--data-dir", str(good)]) == 2
    one_error(capsys, "model.safetensors", "not a readable safetensors file")


def test_malicious_pickle_via_finetune_never_runs(tmp_path, good, capsys):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "weights.pth"
    evil.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    assert main(["finetune", "--from", str(evil), "--data", "fashion-mnist", "--data-dir", str(good),
                 "--out", str(tmp_path / "r"), *FIXED]) == 2
    one_error(capsys, "weights_only")
    assert not marker.exists()


def test_existing_run_is_not_overwritten(tmp_path, good, capsys):
    assert train(good, tmp_path / "a") == 0
    capsys.readouterr()
    weights = (tmp_path / "a" / "model.safetensors").read_bytes()
    metrics = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert train(good, tmp_path / "a") == 2
    one_error(capsys, "already holds a run", "--resume")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == weights
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == metrics


@pytest.mark.parametrize("args,fragment", [
    (["--model", "resnet9"], "unknown model 'resnet9'"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--milestones", "0.5", "2"], "milestones"),
    (["--freeze", "all"], None),
])
def test_bad_flag_values(tmp_path, good, capsys, args, fragment):
    if args[0] == "--freeze":   # a finetune flag: argparse rejects it for train (usage + exit 2)
        with pytest.raises(SystemExit) as e:
            train(good, tmp_path / "r", *args)
        assert e.value.code == 2
        return
    argv = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(good),
            "--epochs", "1", "--out", str(tmp_path / "r"), *FIXED]
    if args[0] == "--model":
        argv[2] = args[1]
    else:
        argv += args
    assert main(argv) == 2
    one_error(capsys, fragment)


def test_divergence_stops_with_step_lr_and_hint(tmp_path, good, capsys):
    assert train(good, tmp_path / "nan", "--lr", "1e30", "--epochs", "3", "--normalize", "none") == 2
    line = one_error(capsys, "training diverged", "at step", "--lr")
    assert re.search(r"lr [0-9.]+e\+30", line) and "checkpoint" in line
    cfg = json.loads((tmp_path / "nan" / "config.json").read_text())
    assert cfg["config"]["recipe"]["lr"] == 1e30

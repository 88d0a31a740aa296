"""A real training process is killed with SIGKILL mid-run; the resumed run must end with weights
bit-identical to an uninterrupted run (CPU)."""

import os
import signal
import subprocess
import sys

import torch
from fakedata import write_fashion_like
from procs import wait_for
from safetensors.torch import load_file

from resnetlab.train.checkpoint import list_checkpoints


def cli(*args):
    return [sys.executable, "-m", "resnetlab", *args]


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=512, n_test=64, size=16)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    common = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "data"),
              "--recipe", "fast", "--epochs", "12", "--batch-size", "32", "--precision", "fp32",
              "--channels-last", "off", "--compile", "off", "--checkpoint-every", "5", "--no-progress"]
    full, part = tmp_path / "full", tmp_path / "part"
    subprocess.run(cli(*common, "--out", str(full)), check=True, env=env, capture_output=True)

    err = tmp_path / "part.err"
    proc = subprocess.Popen(cli(*common, "--out", str(part)), env=env, stdout=subprocess.DEVNULL,
                            stderr=err.open("w"))
    wait_for(lambda: bool((c := list_checkpoints(part)) and c[-1].step >= 15), proc,
             "a checkpoint at step 15", err)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = list_checkpoints(part)[-1].step
    assert killed_at < 192 and not (part / "model.safetensors").exists()

    resumed = subprocess.run(cli("train", "--resume", str(part), "--no-progress"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {part} at step {killed_at}/192" in resumed.stderr
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

"""Crash safety: a training process killed at any moment, a checkpoint write included, leaves only
complete, readable checkpoints, and the resumed run ends bit-identical to an uninterrupted one."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from fakedata import write_fashion_like
from safetensors.torch import load_file

from resnetlab.train.checkpoint import list_checkpoints


def cli(*args):
    return [sys.executable, "-m", "resnetlab", *args]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One uninterrupted reference run (6 epochs of 8 steps, a checkpoint every 5 steps)."""
    tmp_path = tmp_path_factory.mktemp("faults")
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    common = ["train", "--model", "resnet8", "--data", "fashion-mnist", "--data-dir", str(tmp_path / "data"),
              "--recipe", "fast", "--epochs", "6", "--batch-size", "32", "--precision", "fp32",
              "--channels-last", "off", "--compile", "off", "--checkpoint-every", "5", "--no-progress"]
    full = tmp_path / "full"
    subprocess.run(cli(*common, "--out", str(full)), check=True, env=env, capture_output=True)
    return tmp_path, env, common, load_file(str(full / "model.safetensors"))


def assert_checkpoints_readable(run):
    for c in list_checkpoints(run):
        load_file(str(c.path / "model.safetensors"))
        load_file(str(c.path / "optim.safetensors"))


def resume(run, env):
    r = subprocess.run(cli("train", "--resume", str(run), "--no-progress"), env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("point", ["checkpoint-mid-write@20", "checkpoint-before-rename@20",
                                   "checkpoint-after-rename@20", "weights-before-rename:model.safetensors"])
def test_killed_inside_a_write_then_resumed_is_bit_identical(setup, point):
    tmp_path, env, common, reference = setup
    run = tmp_path / point.split("@")[0].replace(":", "-")
    r = subprocess.run(cli(*common, "--out", str(run)), env={**env, "RESNETLAB_FAILPOINT": point},
                       capture_output=True)
    assert r.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    assert_checkpoints_readable(run)   # a half-written step-N.tmp is never taken for a checkpoint
    resume(run, env)
    assert same(reference, load_file(str(run / "model.safetensors")))


@pytest.mark.slow
def test_random_sigkills_then_resume_is_bit_identical(setup):
    """Kill at 8 random moments (seeded), resuming each time; every state on disk stays readable."""
    tmp_path, env, common, reference = setup
    run = tmp_path / "random"
    rng = random.Random(1234)
    cmd = cli(*common, "--out", str(run))
    kills = 0
    while kills < 8:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 4.0))   # python + torch start-up takes ~2 s of that
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert_checkpoints_readable(run)
        cmd = cli("train", "--resume", str(run), "--no-progress")
    if not (run / "summary.json").exists():
        resume(run, env)
    assert kills >= 3
    assert same(reference, load_file(str(run / "model.safetensors")))

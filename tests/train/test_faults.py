"""Crash safety: a training process killed at any moment, a checkpoint write included, leaves only
complete, readable checkpoints, and the resumed run ends bit-identical to an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from fakedata import write_fashion_like
from procs import wait_for
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


def last_step(run) -> int:
    """The step of the newest complete training record in metrics.jsonl (0 before the first)."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError):   # a line being written
            continue
    return 0


@pytest.mark.slow
def test_random_sigkills_then_resume_is_bit_identical(setup, tmp_path):
    """Kill at 7 random moments (seeded), resuming each time; every state on disk stays readable.
    Each kill waits for an observed event (the run's metrics reach a random step past the last
    kill), then a random fraction of a step, so it lands inside a step or a checkpoint write on a
    fast machine and a slow one alike."""
    _, env, common, reference = setup
    run = tmp_path / "random"
    rng = random.Random(1234)
    cmd = cli(*common, "--out", str(run))
    kills, total = 0, 48
    for i in range(1, 8):
        target = 6 * i + rng.randint(0, 5)           # steps 6 .. 47, increasing: the run progresses
        err = tmp_path / f"kill{i}.err"
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"))
        wait_for(lambda: last_step(run) >= target, proc, f"training step {target}", err)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:                  # finished in the meantime: nothing left to kill
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert_checkpoints_readable(run)
        cmd = cli("train", "--resume", str(run), "--no-progress")
    if not (run / "summary.json").exists():
        resume(run, env)
    assert kills >= 3 and last_step(run) == total
    assert same(reference, load_file(str(run / "model.safetensors")))

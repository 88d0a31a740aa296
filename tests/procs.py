"""Child processes in tests: wait for an observed event, and when it does not come, say what happened
(the child's exit code and the end of its stderr) instead of failing later on missing files; and
interrupting an in-process run after a checkpoint (train_until_checkpoint)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def tail(path: Path | None, n: int = 3000) -> str:
    if path is None or not Path(path).exists():
        return "(no stderr captured)"
    return Path(path).read_text(errors="replace")[-n:]


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen, what: str, stderr: Path | None = None,
             timeout: float = 600) -> None:
    """Poll `cond()` until it holds. Fails at once if `proc` exits first; the deadline is only a
    backstop against a hung child (generous: a slow machine is not a failure)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            if cond():      # the event and the exit raced
                return
            raise AssertionError(f"the process exited with code {proc.returncode} before {what}:\n"
                                 f"{tail(stderr)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s; the process still runs:\n{tail(stderr)}")
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with_env(entry: str) -> list[int]:
    """Processes whose environment holds `entry` (e.g. "RUN_TAG=abc"): a launcher and its children."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in environ:
            found.append(int(proc.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def train_until_checkpoint(cfg, monkeypatch, n: int = 3) -> None:
    """Train `cfg` in process and stop it (KeyboardInterrupt) right after its n-th checkpoint write:
    a run interrupted mid-epoch, with its checkpoints on disk, for the resume-is-exact tests."""
    import pytest

    import resnetlab.train.loop as loop
    from resnetlab.train.loop import train

    real_save, calls = loop.save_checkpoint, []

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)

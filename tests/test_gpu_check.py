"""benchmarks/gpu_check.sh, the prepared check for a lent CUDA machine, as far as a CPU allows."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHON": sys.executable}


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs its checks")
def test_without_cuda_it_says_so_and_exits_0():
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "no CUDA device: nothing to check here (run this on a machine with a CUDA GPU)"


@pytest.mark.slow
def test_a_cpu_dry_run_prints_one_line_per_check_and_passes(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run"],
                       capture_output=True, text=True, timeout=470,
                       env={**ENV, "XDG_CACHE_HOME": str(tmp_path)})
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert [x.split()[0] for x in lines] == ["train", "nccl", "resume", "r50"]
    assert "bit-identical to the uninterrupted run" in lines[2]

"""The checks to run when a CUDA machine is lent (`bash benchmarks/gpu_check.sh`): one line each.

    train    resnet20, 200 steps on CUDA, the engine's probe choosing precision / layout / compile
    nccl     a 2-process NCCL run (needs 2 GPUs; says so otherwise)
    resume   a run killed right after a checkpoint and resumed, against an uninterrupted one
    r50      ResNet-50 at 224: training images/s at batch 256, inference at batch 64

Data: synthetic images in the Fashion-MNIST file format (tests/fakedata.py), so nothing has to be
on the machine but this tree and PyTorch. Without CUDA it prints "no CUDA device" and exits 0.
Each check has its own time limit; the whole script stays under 8 minutes on an H100.
`--cpu-dry-run` runs the same checks, tiny, on the CPU (how this script is tested without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def line(check: str, text: str) -> None:
    print(f"{check:<7} {text}", flush=True)


def resnetlab(*args, env=None, timeout=150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnetlab", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})


# --cpu-dry-run: the same checks, tiny, on the CPU, to test this script where no GPU is lent.
DRY = "--cpu-dry-run" in sys.argv
DEVICE = "cpu" if DRY else "cuda"
STEPS = 10 if DRY else 200


def train_args(data: Path, out: Path, *extra) -> list[str]:
    return ["train", "--model", "resnet20", "--data", "fashion-mnist", "--data-dir", str(data),
            "--out", str(out), "--device", DEVICE, "--recipe", "fast", "--batch-size", "128", "--no-progress",
            "--json", *extra]


def check_train(data: Path, tmp: Path) -> None:
    t0 = time.time()
    r = resnetlab(*train_args(data, tmp / "train", "--iterations", str(STEPS)), timeout=240)
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    s = json.loads(r.stdout)
    engine = json.loads((tmp / "train" / "config.json").read_text())["engine"]
    where = "the CPU" if DRY else torch.cuda.get_device_name()
    line("train", f"resnet20 {STEPS} steps on {where}: {s['images_per_s']:.0f} img/s with "
                  f"{s['engine']}; probe {engine['probe']}; {time.time() - t0:.0f} s in all; "
                  f"test error {s['test_top1_error']:.4f}")


def check_nccl(data: Path, tmp: Path) -> None:
    if DRY or torch.cuda.device_count() < 2:
        line("nccl", f"skipped: {torch.cuda.device_count()} GPU here, a 2-process NCCL run needs 2")
        return
    fixed = ["--precision", "fp32", "--channels-last", "on", "--compile", "off", "--iterations", "100"]
    r = resnetlab(*train_args(data, tmp / "nccl", *fixed, "--nproc", "2", "--sync-bn"), timeout=240)
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    cfg = json.loads((tmp / "nccl" / "config.json").read_text())
    s = json.loads((tmp / "nccl" / "summary.json").read_text())
    line("nccl", f"2 processes (world size {cfg['world_size']}), SyncBatchNorm: "
                 f"{s['images_per_s']:.0f} img/s, test error {s['test_top1_error']:.4f}")


def check_resume(data: Path, tmp: Path) -> None:
    from safetensors.torch import load_file

    fixed = ["--precision", "fp32", "--channels-last", "on", "--compile", "off", "--iterations",
             str(STEPS * 3 // 10 * 2), "--checkpoint-every", str(STEPS * 3 // 10)]
    half = STEPS * 3 // 10
    full, part = tmp / "full", tmp / "part"
    for out, env in ((full, None), (part, {"RESNETLAB_FAILPOINT": f"checkpoint-after-rename@{half}"})):
        r = resnetlab(*train_args(data, out, *fixed), env=env)
        if (r.returncode != 0) != (env is not None):
            raise RuntimeError(f"{out.name}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    r = resnetlab("train", "--resume", str(part), "--no-progress")
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    if all(torch.equal(a[k], b[k]) for k in a):
        line("resume", f"killed at step {half} of {2 * half} and resumed on {DEVICE}: bit-identical to "
                       "the uninterrupted run")
        return
    worst = max(((a[k].double() - b[k].double()).norm() / a[k].double().norm().clamp_min(1e-30)).item()
                for k in a if a[k].is_floating_point())
    line("resume", f"killed at step {half} of {2 * half} and resumed on {DEVICE}: not bit-identical, largest "
                   f"norm-wise relative difference {worst:.2e} (cuDNN's autotuned kernels are not "
                   "deterministic; docs/RELIABILITY.md)")


def check_resnet50() -> None:
    from resnetlab import create_model

    device = torch.device(DEVICE)
    torch.backends.cudnn.benchmark = True
    big, small, steps = (8, 2, 2) if DRY else (256, 64, 20)
    model = create_model("resnet50").to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)

    def timed(fn, batch: int, steps: int) -> float:
        for _ in range(2 if DRY else 5):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        return batch * steps / (time.perf_counter() - t0)

    x = torch.randn(big, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (big,), device=device)

    def train_step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_rate = timed(train_step, big, steps)
    model.eval()
    xi = x[:small]
    rates = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        def infer(dtype=dtype):
            with torch.no_grad(), torch.autocast(DEVICE, dtype=dtype, enabled=dtype is not None):
                model(xi)
        rates[name] = timed(infer, small, steps * 2)
    line("r50", f"ResNet-50 224px: training {train_rate:.0f} img/s (batch {big}, bf16 + channels_last); "
                f"inference batch {small}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()) + " img/s")


def main() -> int:
    if not torch.cuda.is_available() and not DRY:
        print("no CUDA device: nothing to check here (run this on a machine with a CUDA GPU)")
        return 0
    from fakedata import write_fashion_like

    failed = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_fashion_like(tmp / "data", n_train=1280 if DRY else 12800, n_test=1000, size=28)
        data = tmp / "data"
        checks = [("train", lambda: check_train(data, tmp)), ("nccl", lambda: check_nccl(data, tmp)),
                  ("resume", lambda: check_resume(data, tmp)), ("r50", check_resnet50)]
        for name, check in checks:
            try:
                check()
            except Exception as e:   # one line per check, pass or fail; the others still run
                failed += 1
                line(name, f"FAILED: {type(e).__name__}: {str(e)[:300]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a training step's time goes, and what fraction of this machine's peak it reaches.

    python benchmarks/step_profile.py --model resnet20 --shape 1x28x28            # the probe's engine
    python benchmarks/step_profile.py --model resnet20 --shape 1x28x28 --precision fp32 --channels-last on
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/step_profile.py ...   # as on a Zen 3

Three measurements, in one process:
  peak       the machine's own limit in the step's arithmetic: a large matmul (2048^3) and a large
             3x3 convolution (forward + backward, 64 -> 64 channels, 32x32, batch 128), each the
             fastest of several timings; the larger of the two is "peak".
  step       full SGD training steps (forward, loss, backward, optimiser) of the model on random
             data at the given batch; FLOPs from torch.utils.flop_counter (convolutions and matmuls,
             forward and backward), time as the median of timed steps.
  profile    torch.profiler over the same steps: self time per op, grouped into convolutions,
             BatchNorm, elementwise (ReLU, adds), optimiser and the rest; the convolutions' FLOP/s
             is their FLOPs over their own time, so it says how close the convolution kernels come to
             peak, apart from everything around them.
Prints one table and, with --json FILE, writes every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

# Profiler op names (self time) -> group. Anything else is "other" (Python, allocation, copies).
GROUPS = {
    "convolution": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                    "aten::convolution", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
                    "aten::thnn_conv2d", "aten::conv2d", "aten::_nnpack_spatial_convolution"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::batch_norm",
                   "aten::_batch_norm_impl_index", "aten::_native_batch_norm_legit",
                   "aten::_native_batch_norm_legit_no_training", "aten::_batch_norm_with_update"),
    "elementwise": ("aten::add", "aten::add_", "aten::relu", "aten::relu_", "aten::clamp_min",
                    "aten::clamp_min_", "aten::threshold_backward", "aten::mul", "aten::mul_",
                    "aten::fill_", "aten::zero_"),
    "matmul + loss": ("aten::addmm", "aten::mm", "aten::linear", "aten::_log_softmax",
                      "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                      "aten::nll_loss_backward", "aten::mean", "aten::adaptive_avg_pool2d",
                      "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool2d_backward"),
    "optimiser": ("Optimizer.step#SGD.step", "aten::_foreach_add_", "aten::_foreach_mul_",
                  "aten::_foreach_add", "aten::_fused_sgd_", "Optimizer.zero_grad#SGD.zero_grad"),
}


def best_seconds(fn, repeats: int = 7) -> float:
    fn()   # warm-up: kernel selection, allocation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)   # other work only adds time: the minimum is the machine's own speed


def machine_peak(precision: str) -> dict:
    """GFLOP/s of a large matmul and a large 3x3 convolution (forward + backward) in `precision`."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 2048
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    matmul = 2 * n ** 3 / best_seconds(lambda: torch.mm(a, b)) / 1e9
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(dtype=dtype,
                                                                 memory_format=torch.channels_last)
    x = torch.randn(128, 64, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    conv_flops = counter.get_total_flops()

    def conv_step():
        x.grad = conv.weight.grad = None
        conv(x).sum().backward()
    conv_rate = conv_flops / best_seconds(conv_step, 5) / 1e9
    return {"matmul_gflops": matmul, "conv_gflops": conv_rate, "peak_gflops": max(matmul, conv_rate),
            "precision": precision}


def group_of(name: str) -> str:
    return next((g for g, names in GROUPS.items() if name in names), "other")


def profile_step(args) -> dict:
    from resnetlab import create_model
    from resnetlab.train.engine import Engine, choose_engine

    shape = tuple(int(v) for v in args.shape.split("x"))

    def build():
        return create_model(args.model, num_classes=10, in_channels=shape[0])

    if args.precision == "auto" or args.channels_last == "auto":
        engine = choose_engine(build, args.model, shape, args.batch, 10, torch.device("cpu"),
                               args.precision, args.channels_last, "off")
    else:
        engine = Engine(precision=args.precision, channels_last=args.channels_last == "on")
    engine.compile = args.compile == "on"
    torch.manual_seed(0)
    model = build().to(memory_format=engine.memory_format).train()
    forward = torch.compile(model) if engine.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4,
                          **({"fused": True} if args.fused_sgd else {}))
    x = torch.randn(args.batch, *shape).contiguous(memory_format=engine.memory_format)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        with engine.autocast():
            loss = F.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5 if not engine.compile else 10):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    counts = counter.get_flop_counts().get("Global", {})
    total_flops = counter.get_total_flops()
    conv_flops = sum(v for op, v in counts.items() if "convolution" in str(op))
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)

    from torch.profiler import ProfilerActivity, profile
    n_prof = max(3, args.steps // 2)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n_prof):
            step()
    ops = {}
    for e in prof.key_averages():
        ops[e.key] = ops.get(e.key, 0.0) + e.self_cpu_time_total / 1e6 / n_prof
    groups: dict[str, float] = {}
    for name, s in ops.items():
        groups[group_of(name)] = groups.get(group_of(name), 0.0) + s
    profiled_s = sum(ops.values())
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]
    return {"model": args.model, "shape": list(shape), "batch": args.batch, "engine": engine.label(),
            "precision": engine.precision, "fused_sgd": args.fused_sgd,
            "step_ms": 1e3 * step_s, "images_per_s": args.batch / step_s,
            "step_gflop": total_flops / 1e9, "conv_gflop": conv_flops / 1e9,
            "profiled_step_ms": 1e3 * profiled_s,
            "groups_ms": {g: 1e3 * s for g, s in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops_ms": [[k, 1e3 * v] for k, v in top]}


def report(peak: dict, r: dict) -> str:
    p = peak["peak_gflops"]
    lines = [f"{r['model']} {'x'.join(map(str, r['shape']))}, batch {r['batch']}, {r['engine']}, "
             f"{torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}",
             f"peak ({peak['precision']}): matmul 2048^3 {peak['matmul_gflops']:.0f} GFLOP/s, 3x3 conv "
             f"fwd+bwd {peak['conv_gflops']:.0f} GFLOP/s -> peak {p:.0f} GFLOP/s",
             f"step: {r['step_ms']:.1f} ms median = {r['images_per_s']:.0f} img/s; {r['step_gflop']:.2f} "
             f"GFLOP per step ({r['conv_gflop']:.2f} in convolutions)",
             f"whole step: {r['step_gflop'] / r['step_ms'] * 1e3:.0f} GFLOP/s = "
             f"{100 * r['step_gflop'] / r['step_ms'] * 1e3 / p:.0f}% of peak",
             "", f"{'group (profiled, self time)':<30} {'ms/step':>8} {'share':>6} {'GFLOP/s':>8} "
             f"{'% peak':>7}"]
    tot = r["profiled_step_ms"]
    for g, ms in r["groups_ms"].items():
        rate = (f"{r['conv_gflop'] / ms * 1e3:>8.0f} {100 * r['conv_gflop'] / ms * 1e3 / p:>6.0f}%"
                if g == "convolution" and ms else "")
        lines.append(f"{g:<30} {ms:>8.1f} {100 * ms / tot:>5.0f}% {rate}")
    lines.append(f"{'(profiled step, with overhead)':<30} {tot:>8.1f}")
    lines += ["", "top ops by self time (ms/step):"]
    lines += [f"  {ms:>7.2f}  {name}" for name, ms in r["top_ops_ms"]]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--shape", default="1x28x28", help="C x H x W of one image")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--compile", default="off", choices=["on", "off"])
    p.add_argument("--fused-sgd", action="store_true", help="torch.optim.SGD(fused=True)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--json", help="write every number to this file")
    args = p.parse_args()
    r = profile_step(args)
    peak = machine_peak(r["precision"])
    print(report(peak, r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak": peak, "step": r, "threads": torch.get_num_threads(),
                       "capability": torch.backends.cpu.get_cpu_capability()}, f, indent=1)


if __name__ == "__main__":
    main()

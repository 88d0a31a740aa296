"""Inference speed on this CPU: ResNet-50 at 224x224, torchvision eager against resnetlab's paths.

  reference   torchvision.models.resnet50() in eager fp32, eval, under torch.no_grad(): what a
              PyTorch user writes;
  candidates  resnetlab's resnet50 with the SAME weights (torchvision parameter names, loaded with
              strict=True), BatchNorm folded into the convolutions (resnetlab.export.fold_batchnorm),
              channels_last, torch.inference_mode(), and then:
                fp32                  as is
                bf16 autocast         torch.autocast("cpu", bfloat16) (AVX-512 BF16 / AMX where present)
                bf16 weights          the whole model and input cast to bfloat16 (no per-call cast)
                jit.freeze fp32       torch.jit.trace + torch.jit.freeze
                onnxruntime fp32      the folded model exported with resnetlab.export.export_onnx,
                                      CPUExecutionProvider, intra-op threads = --threads
                onnxruntime static    the same with a fixed batch size (resnetlab export --batch N):
                                      one file for batch 1, one for batch 32
                torch.compile         only with --compile (inductor; compiling takes minutes)

Random weights (nothing can be downloaded), with the BatchNorm statistics calibrated on the sample
images so activations have a trained network's scale; the same state dict goes into both models.
Accuracy is the agreement of each candidate's top-1 class with the reference's on real images
(CIFAR-10 JPEGs upscaled to 224, or random images with --images random) and the largest absolute
logit difference: with fixed weights the logits are deterministic functions of the input, so
agreement measures what the faster arithmetic changes.

Timing alternates the paths in rounds (the order rotates every round) so that a drift in machine
speed hits every path alike: per round each path runs --iters-1 calls at batch 1 and --iters-32
calls at batch 32. Reported: median batch-1 latency and batch-32 throughput over all calls, and the
median over rounds of the pairwise speed-up against the reference timed in the same round.

    python benchmarks/inference.py                          # ~5 minutes on 2 cores
    python benchmarks/inference.py --rounds 5 --iters-1 20 --iters-32 3 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@dataclass
class Candidate:
    name: str
    run: Callable[[torch.Tensor], torch.Tensor]   # float32 NCHW -> float32 logits
    note: str = ""
    b1: list[float] = field(default_factory=list)        # seconds per batch-1 call, all rounds
    b32: list[float] = field(default_factory=list)       # seconds per batch-32 call, all rounds
    round_b1: list[float] = field(default_factory=list)  # per-round medians
    round_b32: list[float] = field(default_factory=list)
    agreement: float = float("nan")
    max_diff: float = float("nan")


# --------------------------------------------------------------------------------------------------
# Images


def sample_images(spec: str, n: int, size: int) -> torch.Tensor:
    """n normalised float images 3 x size x size: CIFAR-10 JPEGs spread over the archive (every
    class), upscaled; or random pixels."""
    if spec == "random" or not Path(spec).is_file():
        if spec != "random":
            print(f"note: {spec} not found; using random images", file=sys.stderr)
        gen = torch.Generator().manual_seed(0)
        pixels = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
        return normalise(pixels.float())
    from resnetlab.data.decode import decode_image

    chosen = []
    step = 60_000 // n   # the archive holds 60,000 files
    with tarfile.open(spec, "r|*") as tar:
        for i, member in enumerate(m for m in tar if m.isfile() and m.name.lower().endswith(".jpg")):
            if i % step == 0:   # spread over the archive: every class folder of both splits
                chosen.append(decode_image(tar.extractfile(member).read(), member.name))
                if len(chosen) == n:
                    break
    x = torch.stack([c.expand(3, -1, -1) for c in chosen]).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return normalise(x)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    return ((pixels / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).contiguous()


# --------------------------------------------------------------------------------------------------
# Models and paths


def reference_model(images: torch.Tensor, calibrate: bool) -> torch.nn.Module:
    """torchvision's ResNet-50, random weights; BatchNorm statistics from the sample images."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    if calibrate:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None       # a cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for chunk in images.split(16):
                model(chunk)
    return model.eval()


def build_paths(tv: torch.nn.Module, args, example: torch.Tensor, tmp: Path,
                calibration: torch.Tensor) -> list[Candidate]:
    from resnetlab import create_model
    from resnetlab.export import export_onnx
    from resnetlab.models.fold import fold_batchnorm

    cl = torch.channels_last

    def reference(x):
        with torch.no_grad():
            return tv(x)

    paths = [Candidate("torchvision eager fp32", reference, "reference: eval, no_grad, contiguous")]
    ours = create_model("resnet50")
    ours.load_state_dict(tv.state_dict(), strict=True)
    folded = fold_batchnorm(ours.eval()).to(memory_format=cl).requires_grad_(False)

    def fp32(x):
        with torch.inference_mode():
            return folded(x.contiguous(memory_format=cl))

    def bf16_autocast(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return folded(x.contiguous(memory_format=cl)).float()

    folded_bf16 = fold_batchnorm(ours.eval()).to(dtype=torch.bfloat16, memory_format=cl).requires_grad_(False)

    def bf16_weights(x):
        with torch.inference_mode():
            return folded_bf16(x.to(torch.bfloat16).contiguous(memory_format=cl)).float()

    paths += [Candidate("fold+CL fp32", fp32, "BN folded, channels_last, inference_mode"),
              Candidate("fold+CL bf16 autocast", bf16_autocast, "autocast(cpu, bfloat16)"),
              Candidate("fold+CL bf16 weights", bf16_weights, "model and input in bfloat16")]

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                frozen = torch.jit.freeze(torch.jit.trace(folded, example.contiguous(memory_format=cl)))

        def jit_fp32(x):
            with torch.inference_mode():
                return frozen(x.contiguous(memory_format=cl))

        paths.append(Candidate("jit.freeze fp32", jit_fp32, "torch.jit.trace + freeze of the folded model"))
    except Exception as e:  # torch.jit is deprecated; report instead of failing the benchmark
        print(f"note: jit.freeze path skipped ({type(e).__name__}: {e})", file=sys.stderr)

    try:
        import onnxruntime as ort

        onnx_file = tmp / "resnet50.onnx"
        exporter = export_onnx(fold_batchnorm(ours.eval()), example, onnx_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

        def onnxruntime(x):
            return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

        paths.append(Candidate("onnxruntime fp32", onnxruntime,
                           f"{exporter} export of the folded model, {args.threads} intra-op threads"))

        # `resnetlab export --batch N`: a fixed batch size lets onnxruntime plan shapes and memory
        # ahead; one file per batch size timed here.
        static = {}
        for n in (1, 32):
            export_onnx(fold_batchnorm(ours.eval()), example[:1].expand(n, -1, -1, -1).contiguous(),
                        tmp / f"resnet50-b{n}.onnx", dynamic_batch=False)
            static[n] = ort.InferenceSession(str(tmp / f"resnet50-b{n}.onnx"), options,
                                             providers=["CPUExecutionProvider"])

        def onnxruntime_static(x):
            if x.shape[0] not in static:   # the agreement sample: the dynamic file
                return onnxruntime(x)
            return torch.from_numpy(static[x.shape[0]].run(None, {"input": x.numpy()})[0])

        paths.append(Candidate("onnxruntime fp32 static", onnxruntime_static,
                               "one export per batch size (--batch 1, --batch 32)"))

        # `resnetlab export --quantize int8`: static QDQ quantization of the same folded file,
        # calibrated on the sample images; 8-bit activations unsigned (u8s8) or signed (s8s8).
        from resnetlab.quantize import quantize_int8

        for acts in ("uint8", "int8"):
            q_file = tmp / f"resnet50-{acts}.onnx"
            quantize_int8(onnx_file, q_file, calibration, len(calibration), None, "minmax", acts)
            q_session = ort.InferenceSession(str(q_file), options, providers=["CPUExecutionProvider"])

            def onnxruntime_int8(x, q_session=q_session):
                return torch.from_numpy(q_session.run(None, {"input": x.numpy()})[0])

            tag = "u8s8" if acts == "uint8" else "s8s8"
            paths.append(Candidate(f"onnxruntime int8 {tag}", onnxruntime_int8,
                                   f"QDQ, per-channel int8 weights, {acts} activations, minmax on "
                                   f"{len(calibration)} images"))

        # The same u8s8 quantization of the fixed-batch files (`--batch N --quantize int8`).
        static_q = {}
        for n in (1, 32):
            q_file = tmp / f"resnet50-b{n}-uint8.onnx"
            quantize_int8(tmp / f"resnet50-b{n}.onnx", q_file, calibration, len(calibration),
                          n if len(calibration) >= n else None, "minmax", "uint8")
            static_q[n] = ort.InferenceSession(str(q_file), options, providers=["CPUExecutionProvider"])
        dynamic_q = paths[-2].run   # the dynamic-batch u8s8 file, for batch sizes without a file

        def onnxruntime_int8_static(x):
            if x.shape[0] not in static_q:
                return dynamic_q(x)
            return torch.from_numpy(static_q[x.shape[0]].run(None, {"input": x.numpy()})[0])

        paths.append(Candidate("onnxruntime int8 u8s8 static", onnxruntime_int8_static,
                               "u8s8, one file per batch size (--batch 1, --batch 32)"))

        # OpenVINO as the runtime of the same files (fp32 and u8s8), if installed. Its CPU plugin
        # would run fp32 models in bf16 on a CPU with AVX-512 BF16: pinned to f32 for a like-for-like
        # comparison (int8 layers stay int8).
        try:
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32"}
            for label, f in (("fp32", onnx_file), ("int8 u8s8", tmp / "resnet50-uint8.onnx")):
                compiled = core.compile_model(core.read_model(str(f)), "CPU", config)

                def openvino_run(x, compiled=compiled):
                    return torch.from_numpy(compiled(x.numpy())[compiled.output(0)])

                paths.append(Candidate(f"openvino {label}", openvino_run,
                                       f"OpenVINO {ov.__version__} CPU plugin, the same file"))
        except ImportError:
            print("note: openvino not installed; its paths are skipped", file=sys.stderr)
    except ImportError:
        print("note: onnxruntime not installed; its path is skipped", file=sys.stderr)

    if args.compile:
        compiled = torch.compile(folded, dynamic=False)

        def compiled_fp32(x):
            with torch.inference_mode():
                return compiled(x.contiguous(memory_format=cl))

        def compiled_bf16(x):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return compiled(x.contiguous(memory_format=cl)).float()

        paths += [Candidate("torch.compile fp32", compiled_fp32, "inductor, folded + channels_last"),
                  Candidate("torch.compile bf16", compiled_bf16, "inductor under bf16 autocast")]
    return paths


# --------------------------------------------------------------------------------------------------
# Measuring


def timed(fn, x: torch.Tensor, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def measure_accuracy(paths: list[Candidate], images: torch.Tensor, batch: int) -> float:
    ref = torch.cat([paths[0].run(c).float() for c in images.split(batch)])
    top = ref.argmax(1)
    for p in paths:
        got = torch.cat([p.run(c).float() for c in images.split(batch)])
        p.agreement = (got.argmax(1) == top).float().mean().item() * 100
        p.max_diff = (got - ref).abs().max().item()
    return ref.abs().max().item()


def run_rounds(paths: list[Candidate], args) -> None:
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(1, 3, args.size, args.size, generator=gen)
    x32 = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    for p in paths:   # warm-up: oneDNN primitives, onnxruntime allocations, compiled graphs
        timed(p.run, x1, 2)
        timed(p.run, x32, 1)
    for r in range(args.rounds):
        order = paths[r % len(paths):] + paths[:r % len(paths)]
        for p in order:
            t1 = timed(p.run, x1, args.iters_1)
            t32 = timed(p.run, x32, args.iters_32)
            p.b1 += t1
            p.b32 += t32
            p.round_b1.append(statistics.median(t1))
            p.round_b32.append(statistics.median(t32))
        ref = paths[0]
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{p.name} {1000 * p.round_b1[-1]:.0f} ms / {args.batch / p.round_b32[-1]:.1f} img/s"
            for p in [ref, *sorted(paths[1:], key=lambda q: q.round_b32[-1])[:1]]), file=sys.stderr)


def pairwise(ref: list[float], cand: list[float]) -> float:
    return statistics.median(r / c for r, c in zip(ref, cand, strict=True))


def report(paths: list[Candidate], args, logit_scale: float) -> dict:
    ref = paths[0]
    rows = []
    for p in paths:
        rows.append({"path": p.name, "note": p.note,
                     "batch1_ms": 1000 * statistics.median(p.b1),
                     "batch32_img_s": args.batch / statistics.median(p.b32),
                     "speedup_batch1": pairwise(ref.round_b1, p.round_b1),
                     "speedup_batch32": pairwise(ref.round_b32, p.round_b32),
                     "top1_agreement_pct": p.agreement, "max_abs_logit_diff": p.max_diff})
    ok = [r for r in rows[1:] if r["top1_agreement_pct"] >= 99]
    best1 = max(ok, key=lambda r: r["speedup_batch1"], default=None)
    best32 = max(ok, key=lambda r: r["speedup_batch32"], default=None)
    width = max(len(r["path"]) for r in rows)
    print(f"\nResNet-50, {args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}, "
          f"{args.rounds} rounds x ({args.iters_1} batch-1 + {args.iters_32} batch-{args.batch} calls); "
          f"agreement on {args.n_images} images ({args.images_used})")
    head = (f"{'path':<{width}}  {'b1 ms':>8}  {'x ref':>6}  {f'b{args.batch} img/s':>10}  {'x ref':>6}  "
            f"{'top-1 agree':>11}  {'max|dlogit|':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        marks = []
        if r is best1:
            marks.append("fastest b1")
        if r is best32:
            marks.append(f"fastest b{args.batch}")
        print(f"{r['path']:<{width}}  {r['batch1_ms']:8.1f}  {r['speedup_batch1']:5.2f}x  "
              f"{r['batch32_img_s']:10.1f}  {r['speedup_batch32']:5.2f}x  {r['top1_agreement_pct']:10.1f}%  "
              f"{r['max_abs_logit_diff']:11.2e}" + (f"  <- {', '.join(marks)}" if marks else ""))
    print(f"(reference logits reach |{logit_scale:.3g}|; 'x ref' is the median over rounds of the "
          f"pairwise speed-up; marks: fastest path with top-1 agreement >= 99%)")
    for label, best, key in (("batch 1", best1, "speedup_batch1"), (f"batch {args.batch}", best32,
                                                                       "speedup_batch32")):
        if best:
            verdict = "meets" if best[key] >= 1.5 else "misses"
            print(f"{label}: {best['path']} is {best[key]:.2f}x torchvision eager "
                  f"({verdict} the 1.5x target)")
    # int8 (issue 19): at least 1.5x onnxruntime fp32 and 3x torchvision eager, at batch 1 and 32.
    ort_fp32 = next((p for p in paths if p.name == "onnxruntime fp32"), None)
    for p in paths:
        if "int8" not in p.name or ort_fp32 is None:
            continue
        for label, attr in (("batch 1", "round_b1"), (f"batch {args.batch}", "round_b32")):
            vs_eager = pairwise(getattr(ref, attr), getattr(p, attr))
            vs_ort = pairwise(getattr(ort_fp32, attr), getattr(p, attr))
            ok = vs_eager >= 3 and vs_ort >= 1.5
            print(f"{p.name}, {label}: {vs_eager:.2f}x torchvision eager, {vs_ort:.2f}x onnxruntime fp32 "
                  f"({'meets' if ok else 'misses'} the 3x / 1.5x targets); top-1 agreement "
                  f"{p.agreement:.1f}%")
            rows[paths.index(p)][f"vs_onnxruntime_fp32_{attr[6:]}"] = vs_ort
    return {"config": {k: v for k, v in vars(args).items() if k != "func"}, "torch": torch.__version__,
            "logit_scale": logit_scale, "rows": rows,
            "fastest_batch1": best1 and best1["path"], "fastest_batch32": best32 and best32["path"]}


def trained_nets(runs: list[str], args) -> list[dict]:
    """For each trained run: its fp32 and int8 ONNX files (resnetlab export), test accuracy of both on
    the run's full test set (resnetlab eval FILE), and batch-1 / batch-256 speed of PyTorch eager
    (the run's model, eval, no_grad) against onnxruntime fp32 and int8, alternating in rounds."""
    from resnetlab.export import export
    from resnetlab.exported import evaluate_exported, load_exported
    from resnetlab.predict import load_run

    out = []
    for run_dir in runs:
        with tempfile.TemporaryDirectory() as tmp:
            files = {"fp32": Path(tmp) / "fp32.onnx", "int8": Path(tmp) / "int8.onnx"}
            export(run_dir, files["fp32"], check=False)
            export(run_dir, files["int8"], quantize="int8", calibration=args.calibration, check=False)
            acc = {k: 1 - evaluate_exported(f, threads=args.threads)["top1_error"] for k, f in files.items()}
            run = load_run(run_dir)
            c, h, w = run.input_size
            model = run.model.eval()

            def eager(x, model=model):
                with torch.no_grad():
                    return model(x)

            sessions = {k: load_exported(f, args.threads).model for k, f in files.items()}
            paths = [Candidate("PyTorch eager fp32", eager), Candidate("onnxruntime fp32", sessions["fp32"]),
                     Candidate("onnxruntime int8", sessions["int8"])]
            gen = torch.Generator().manual_seed(2)
            x1, xb = torch.randn(1, c, h, w, generator=gen), torch.randn(256, c, h, w, generator=gen)
            for p in paths:
                timed(p.run, x1, 3)
                timed(p.run, xb, 1)
            for r in range(args.rounds):
                for p in paths[r % 3:] + paths[:r % 3]:
                    p.round_b1.append(statistics.median(timed(p.run, x1, 4 * args.iters_1)))
                    p.round_b32.append(statistics.median(timed(p.run, xb, args.iters_32)))
            row = {"run": str(run_dir), "model": run.model_name, "input": [c, h, w],
                   "test_accuracy_fp32": acc["fp32"], "test_accuracy_int8": acc["int8"],
                   "paths": {p.name: {"batch1_ms": 1000 * statistics.median(p.round_b1),
                                      "batch256_img_s": 256 / statistics.median(p.round_b32),
                                      "vs_eager_batch1": pairwise(paths[0].round_b1, p.round_b1),
                                      "vs_eager_batch256": pairwise(paths[0].round_b32, p.round_b32)}
                             for p in paths}}
            out.append(row)
            print(f"\n{run.model_name} ({run_dir}), input {c}x{h}x{w}: test accuracy fp32 "
                  f"{100 * acc['fp32']:.2f}%, int8 {100 * acc['int8']:.2f}% "
                  f"({100 * (acc['int8'] - acc['fp32']):+.2f} points; int8 calibrated on {args.calibration} "
                  f"training images)")
            for name, r in row["paths"].items():
                print(f"  {name:<20} b1 {r['batch1_ms']:7.2f} ms ({r['vs_eager_batch1']:4.2f}x eager)   "
                      f"b256 {r['batch256_img_s']:8.0f} img/s ({r['vs_eager_batch256']:4.2f}x eager)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (paths alternate within each)")
    p.add_argument("--iters-1", type=int, default=10, help="batch-1 calls per path per round")
    p.add_argument("--iters-32", type=int, default=2, help="batch-32 calls per path per round")
    p.add_argument("--batch", type=int, default=32, help="the throughput batch size")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads (default: cores)")
    p.add_argument("--images", default=str(DEFAULT_IMAGES),
                   help="CIFAR-10 JPEG archive for the agreement check, or 'random'")
    p.add_argument("--n-images", type=int, default=64, help="images for the agreement check")
    p.add_argument("--no-calibrate", action="store_true", help="keep BatchNorm statistics at init (0/1)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    p.add_argument("--only", nargs="+", help="time only paths whose name contains one of these words "
                                             "(the reference always runs)")
    p.add_argument("--trained", nargs="+", metavar="RUN", help="also (or with --no-resnet50, only) these "
                   "trained run folders: fp32 vs int8 test accuracy and speed")
    p.add_argument("--calibration", type=int, default=512, help="--trained: int8 calibration images")
    p.add_argument("--no-resnet50", action="store_true", help="skip the ResNet-50 table")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    # Half the images measure agreement, the other half (never scored) calibrate the int8 files.
    sample = sample_images(args.images, 2 * args.n_images, args.size)
    images, calibration = sample[0::2].contiguous(), sample[1::2].contiguous()
    args.images_used = "random pixels" if args.images == "random" or not Path(args.images).is_file() \
        else f"CIFAR-10 JPEGs upscaled from 32 px, {Path(args.images).name}"
    result = {}
    if not args.no_resnet50:
        tv = reference_model(images, calibrate=not args.no_calibrate)
        with tempfile.TemporaryDirectory() as tmp:
            paths = build_paths(tv, args, images[:2], Path(tmp), calibration)
            if args.only:
                paths = paths[:1] + [q for q in paths[1:] if any(w in q.name for w in args.only)]
            print(f"set-up {time.time() - t0:.0f} s; paths: {', '.join(q.name for q in paths)}",
                  file=sys.stderr)
            logit_scale = measure_accuracy(paths, images, args.batch)
            run_rounds(paths, args)
            result = report(paths, args, logit_scale)
    if args.trained:
        result["trained"] = trained_nets(args.trained, args)
    result["wall_s"] = time.time() - t0
    print(f"total {result['wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

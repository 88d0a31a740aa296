"""Export a trained run for inference outside resnetlab: ONNX or TorchScript, BatchNorm folded.

    export("runs/r20", "r20.onnx")                       # + r20.onnx.json, the preprocessing contract
    export("runs/r50/checkpoints/step-00010000", "r50.pt", format="torchscript")

* BatchNorm is folded into the convolutions first (`resnetlab.models.fold.fold_batchnorm`).
* ONNX goes through `torch.onnx.export` with the torch.export-based ("dynamo") exporter, the
  default and recommended one since PyTorch 2.9; the TorchScript-based exporter is the fallback
  when it fails (e.g. without onnxscript). Batch axis dynamic unless a fixed batch is asked for.
  The written file is checked in onnxruntime against PyTorch when onnxruntime is installed.
* TorchScript: `torch.jit.trace` of the folded model, `torch.jit.save`d, reloaded and compared.
* The model is exported without the normalisation: it takes float32 N x C x H x W already
  normalised. `include_preprocess=True` bakes the run's Normalizer in front instead: the model
  then takes uint8 pixels 0..255 (N x C x H x W, already resized/cropped).
* Next to FILE a JSON sidecar FILE.json holds the class names, the input shape and the
  preprocessing contract (channels, resize, mean/std).
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .data.augment import Normalizer
from .errors import ResnetlabError
from .models.fold import fold_with_pairs
from .predict import LUMINANCE, TrainedRun, load_run
from .quantize import QUANTIZE, calibration_inputs, quantize_int8
from .train.checkpoint import write_json

FORMATS = ("onnx", "torchscript")
# --------------------------------------------------------------------------------------------------
# Preprocessing baked into the model


class WithPreprocess(nn.Module):
    """uint8 pixels 0..255 (N x C x H x W) -> model((x / 255 - mean) / std), as one multiply-add."""

    def __init__(self, model: nn.Module, normalizer: Normalizer):
        super().__init__()
        self.model = model
        std = normalizer.std.detach().float()
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -normalizer.mean.detach().float() / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float() * self.scale + self.shift)


# --------------------------------------------------------------------------------------------------
# Writers


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path, opset: int | None = None,
                dynamic_batch: bool = True) -> str:
    """Write `module` (eval mode) as ONNX with input "input" and output "logits"; returns the exporter
    used: "dynamo" (torch.export-based) or "torchscript-based" (the legacy one, if the first fails)."""
    path = Path(path)
    common = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
    try:
        shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=shapes, verbose=False, **common)
        return "dynamo"
    except Exception as first:  # the exporter raises many types; the legacy one may still work
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), str(path), dynamic_axes=axes, **legacy,
                                  **{**common, "opset_version": opset or 17})
        except Exception as second:
            raise ResnetlabError(f"ONNX export failed: {type(first).__name__}: {first}; the TorchScript-"
                                 f"based exporter also failed: {type(second).__name__}: {second}") from None
        return "torchscript-based"


def export_torchscript(module: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    with warnings.catch_warnings():   # torch.jit is deprecated in favour of torch.export
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, str(path))


def onnx_opset(path: str | Path) -> int | None:
    try:
        import onnx
    except ImportError:
        return None
    proto = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def run_onnx(path: str | Path, x: torch.Tensor, threads: int | None = None) -> torch.Tensor:
    """Logits of an exported ONNX file in onnxruntime (CPUExecutionProvider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _check(fmt: str, path: Path, reference: nn.Module, example: torch.Tensor) -> dict:
    """Run the written file on `example` and compare with the unfolded PyTorch model."""
    with torch.no_grad():
        expected = reference(example).float()
    if fmt == "onnx":
        try:
            got = run_onnx(path, example)
        except ImportError:
            return {"checked": False,
                    "reason": "onnxruntime is not installed (pip install 'resnetlab[onnx]')"}
        runtime = "onnxruntime"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            got = loaded(example).float()
        runtime = "torch.jit.load"
    diff = (got - expected).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    if not diff <= 1e-3 * scale:
        raise RuntimeError(f"the exported {fmt} model disagrees with PyTorch: max |logit diff| {diff:.3g} "
                           f"(logits up to {scale:.3g}); {path} is not usable")
    return {"checked": True, "runtime": runtime, "max_abs_logit_diff": diff, "batch": example.shape[0]}


def _check_quantized(path: Path, reference: nn.Module, inputs: torch.Tensor, batch: int | None) -> dict:
    """An int8 file cannot match fp32 logits to 1e-3: report how often its top-1 class agrees with
    PyTorch's on the calibration inputs (the test-set accuracy is `resnetlab eval FILE`'s to say)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"checked": False, "reason": "onnxruntime is not installed (pip install 'resnetlab[onnx]')"}
    from .exported import OnnxModel

    x = inputs[:256]
    got = OnnxModel(path, batch, "uint8" if x.dtype == torch.uint8 else "float32")(x)
    with torch.no_grad():
        expected = reference(x).float()
    agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    return {"checked": True, "runtime": "onnxruntime", "top1_agreement": agree,
            "max_abs_logit_diff": (got - expected).abs().max().item(), "images": int(len(x))}


# --------------------------------------------------------------------------------------------------
# The contract


def preprocess_contract(run: TrainedRun, included: bool) -> dict:
    """What a consumer must do to an image before the exported model sees it."""
    norm = run.input_normalizer()
    c = run.channels

    def stat(t: torch.Tensor):
        return t.flatten().tolist() if t.shape[-2:] == (1, 1) else t.tolist()

    g = dict(run.geometry)
    if g["mode"] == "resize":
        resize = (f"resize the image to {g['size'][0]} x {g['size'][1]} (H x W), bilinear with antialiasing "
                  "(aspect ratio not kept)")
        if g.pop("flip", False):
            resize += (" (the run was evaluated on the image and its horizontal mirror, averaging their "
                       "softmax; the image alone is the single-view equivalent)")
    else:
        s = g["crop"][0]
        resize = (f"resize the shorter side to {g['shorter_side']} (bilinear, antialiased, aspect kept), "
                  f"then take the centre {s} x {s} crop")
        if g.pop("ten_crop", False):
            resize += " (the run was evaluated with ten crops, averaging their softmax; one centre crop is " \
                      "the single-view equivalent)"
    steps = [
        "decode to 8-bit pixels; drop alpha; 16-bit images keep the high byte",
        ("convert to one gray channel by luminance 0.299 R + 0.587 G + 0.114 B" if c == 1
         else "convert to RGB (a gray image gives 3 equal channels)"),
        resize,
    ]
    if included:
        steps.append("feed uint8 N x C x H x W (NCHW, values 0..255); the model normalises itself")
    else:
        steps.append("x = (pixel / 255 - mean) / std per channel" +
                     (" (mean is a per-pixel C x H x W map)" if norm.mean.shape[-2:] != (1, 1) else "") +
                     ", as float32 N x C x H x W (NCHW)")
    steps.append("softmax(logits, axis=1)[i] is the probability of classes[i]")
    return {
        "included": included,
        "channels": "gray" if c == 1 else "RGB",
        "luminance": list(LUMINANCE) if c == 1 else None,
        "geometry": g,
        "eval_view": run.view,   # the run's evaluation view (resnetlab eval FILE uses it: ten crops, flips)
        "interpolation": "bilinear, antialiased",
        "mean": stat(norm.mean),
        "std": stat(norm.std),
        "mean_shape": list(norm.mean.shape),
        "formula": "(pixel / 255 - mean) / std",
        "steps": steps,
    }


# --------------------------------------------------------------------------------------------------
# The command's API


def parse_batch(batch: str | int) -> int | None:
    """"dynamic" -> None, "N" -> N (a fixed batch size)."""
    if isinstance(batch, int) or str(batch).isdigit():
        n = int(batch)
        if n >= 1:
            return n
    elif str(batch).lower() == "dynamic":
        return None
    raise ResnetlabError(f"--batch must be 'dynamic' or a positive batch size, got {batch!r}")


def export(run_or_checkpoint: str | Path, out: str | Path, format: str = "onnx", opset: int | None = None,
           batch: str | int = "dynamic", include_preprocess: bool = False, check: bool = True,
           quantize: str | None = None, calibration: int = 512, calibration_method: str = "minmax",
           activations: str = "uint8") -> dict:
    """Export a run (folder or checkpoint) with BatchNorm folded; writes `out` and `out`.json and
    returns the sidecar's contents (plus "check": the written file run against PyTorch).
    quantize="int8": static int8 quantization in onnxruntime, calibrated on `calibration` training
    images (resnetlab.quantize)."""
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ResnetlabError(f"unknown export format {format!r}; choose {' or '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ResnetlabError(f"--quantize must be {' or '.join(QUANTIZE)}, got {quantize!r}")
    if quantize and fmt != "onnx":
        raise ResnetlabError("--quantize applies to --format onnx only")
    if opset is not None and fmt != "onnx":
        raise ResnetlabError("--opset applies to --format onnx only")
    if opset is not None and opset < 7:
        raise ResnetlabError(f"--opset must be 7 or more, got {opset}")
    fixed = parse_batch(batch)
    out = Path(out)
    if out.is_dir():
        raise ResnetlabError(f"--out {out} is a folder; give a file name, e.g. {out / _default_name(fmt)}")
    run = load_run(run_or_checkpoint, "cpu")
    folded, pairs = fold_with_pairs(run.model)
    reference: nn.Module = run.model
    module: nn.Module = folded
    if include_preprocess:
        norm = run.input_normalizer()
        module, reference = WithPreprocess(folded, norm).eval(), WithPreprocess(run.model, norm).eval()
    h, w = run.output_hw
    n = fixed or 2   # a dynamic batch is traced with 2: a batch of 1 can be specialised away
    gen = torch.Generator().manual_seed(0)
    if include_preprocess:
        example = torch.randint(0, 256, (n, run.channels, h, w), generator=gen, dtype=torch.uint8)
    else:
        example = torch.randn(n, run.channels, h, w, generator=gen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if fmt == "onnx":
            exporter = export_onnx(module, example, tmp, opset, dynamic_batch=fixed is None)
            opset_used = onnx_opset(tmp) or opset
            if quantize:
                fp32 = tmp.with_name(tmp.name + ".fp32")
                os.replace(tmp, fp32)
                try:
                    inputs = calibration_inputs(run, calibration, pixels=include_preprocess)
                    quantized = quantize_int8(fp32, tmp, inputs, calibration, fixed, calibration_method,
                                              activations)
                finally:
                    fp32.unlink(missing_ok=True)
        else:
            export_torchscript(module, example, tmp)
            exporter, opset_used = "torch.jit.trace", None
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    batch_dim = "batch" if fixed is None else fixed
    cfg = run.record.config
    sidecar = {
        "format": fmt,
        "precision": "int8" if quantize else "fp32",
        **({"quantization": quantized} if quantize else {}),
        "exporter": exporter,
        **({"opset": opset_used} if fmt == "onnx" else {}),
        "torch": torch.__version__,
        "model": run.model_name,
        "run": str(run.run_dir),
        "weights": str(run.source),
        "batchnorm_folded": len(pairs),
        "classes": run.classes,
        "num_classes": len(run.classes),
        "input": {"name": "input", "shape": [batch_dim, run.channels, h, w],
                  "dtype": "uint8" if include_preprocess else "float32", "layout": "NCHW"},
        "output": {"name": "logits", "shape": [batch_dim, len(run.classes)], "dtype": "float32"},
        "preprocess": preprocess_contract(run, include_preprocess),
        # What `resnetlab eval FILE` evaluates on by default: the run's own data, as it opened it.
        "data": {"spec": cfg.data, "data_dir": cfg.data_dir, "image_size": cfg.image_size,
                 "stream": cfg.stream, "classes": cfg.classes},
    }
    sidecar_path = Path(f"{out}.json")
    write_json(sidecar_path, sidecar)   # temp file + rename, as every file of a run
    result = {**sidecar, "path": str(out), "sidecar": str(sidecar_path)}
    if check:
        result["check"] = (_check_quantized(out, reference, inputs, fixed) if quantize
                           else _check(fmt, out, reference, example))
    return result


def _default_name(fmt: str) -> str:
    return "model.onnx" if fmt == "onnx" else "model.pt"

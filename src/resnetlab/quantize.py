"""Static post-training int8 quantization of an exported ONNX file, with onnxruntime's own tools.

    export("runs/r20", "r20-int8.onnx", quantize="int8", calibration=512)

The fp32 file is written first (BatchNorm folded), then `quant_pre_process` (shape inference and
graph optimisation, what onnxruntime recommends before quantizing) and `quantize_static`: QDQ format,
int8 weights per output channel, 8-bit activations per tensor with ranges calibrated on
`calibration` training images of the run's own data set, prepared exactly as its evaluation
prepares them (geometry, normalisation, the ten crops of a ten-crop run, the mirrors of a flip
run). No quantization arithmetic is written here; the sidecar records how the file was made.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .errors import ResnetlabError
from .predict import TrainedRun

QUANTIZE = ("int8",)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ACTIVATIONS = ("uint8", "int8")


def calibration_inputs(run: TrainedRun, n: int, pixels: bool, seed: int = 0) -> torch.Tensor:
    """`n` training images of the run's data set (a fixed random choice) as the exported model's
    input: float32 normalised, or uint8 pixels when the file normalises itself (`pixels`)."""
    from .train.evaluate import open_run_data

    if n < 1:
        raise ResnetlabError(f"--calibration must be 1 or more images, got {n}")
    _, splits = open_run_data(run.record)
    train = splits.train
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train), generator=gen)[:n].sort().values
    images = train.read(index) if hasattr(train, "read") else train.images[index]   # streamed or in memory
    x = run._fit(torch.stack([run.to_channels(im) for im in images]), crops=True)
    if pixels:   # a ten-crop (flip) run is calibrated on its ten crops (the images and their mirrors)
        return (x.flatten(0, 1) if x.ndim == 5 else x).round().clamp(0, 255).to(torch.uint8)
    x = run.normalize(x, run.input_normalizer()).float()
    return x.flatten(0, 1) if x.ndim == 5 else x


def quantize_int8(fp32: Path, out: Path, inputs: torch.Tensor, images: int, batch: int | None,
                  method: str = "minmax", activations: str = "uint8") -> dict:
    """Write `out`, the int8 (QDQ) form of the ONNX file `fp32`, calibrated on `inputs`; returns what
    the sidecar records about it. `images`: how many images `inputs` came from (x10 for ten crops, x2
    for flips)."""
    try:
        import onnxruntime
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ResnetlabError("--quantize needs onnxruntime: pip install 'resnetlab[onnx]'") from None
    if method not in CALIBRATION_METHODS:
        raise ResnetlabError(f"--calibration-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                             f"got {method!r}")
    if activations not in ACTIVATIONS:
        raise ResnetlabError(f"activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    step = batch or 32
    chunks = [inputs[i:i + step] for i in range(0, len(inputs) - (len(inputs) % step if batch else 0), step)]
    if not chunks:
        raise ResnetlabError(f"--calibration {len(inputs)} is less than the file's fixed batch {batch}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(chunks)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"input": x.contiguous().numpy()}

    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    act = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="resnetlab-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # The calibrator writes its augmented model next to this folder's files, not the user's.
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8, calibrate_method=calibrate,
                        calibration_providers=["CPUExecutionProvider"])
    return {"precision": "int8", "format": "QDQ", "weights": "int8, per output channel, symmetric",
            "activations": f"{activations}, per tensor, asymmetric",
            "tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
            "calibration": {"images": images, "inputs": int(len(inputs)), "method": method, "split": "train",
                            "seed": 0}}

"""An exported ONNX file as a run: `resnetlab eval model.onnx` and `resnetlab predict model.onnx`.

The sidecar `model.onnx.json` that `resnetlab export` writes beside the file says everything needed
to feed the model as its run did: the classes, the input (shape, dtype), the preprocessing contract
(channels, geometry, mean/std) and the data set the run was trained on. `load_exported` checks the
sidecar against the file's own graph (a sidecar of another export is one clear error) and returns an
`ExportedRun`: a `TrainedRun` whose model is an onnxruntime session, so `predict` works unchanged and
`evaluate_exported` gives the same JSON as `resnetlab eval` of a run folder (the same counts, the loss
to rounding: tests/test_exported.py). Two approximations, both for a per-pixel mean only: a ten-crop
run is fed the centre crop's mean map for all ten crops (the sidecar holds the map at the input size
only), and a flip run exported with the normalisation inside normalises the mirror with the unmirrored
map (without it the map is mirrored along, as the run's evaluation does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data.augment import Normalizer
from .data.loader import View
from .data.open import loader_for, open_data
from .data.splits import restrict
from .errors import ResnetlabError
from .predict import TrainedRun
from .train.evaluate import evaluate

_DTYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


def sidecar_path(path: str | Path) -> Path:
    return Path(f"{path}.json")


def is_exported(path: str | Path) -> bool:
    """Whether `path` names an exported ONNX file (rather than a run or checkpoint folder)."""
    p = Path(path)
    return p.suffix.lower() == ".onnx" and not p.is_dir()


class OnnxModel(nn.Module):
    """An ONNX file in onnxruntime as a module: N x C x H x W in, logits out (CPU tensors). A file
    with a fixed batch size is fed in chunks of that size, the last one padded. A file that takes
    uint8 pixels (exported with --include-preprocess) gets its input rounded to 0..255."""

    def __init__(self, path: Path, batch: int | None, dtype: str, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3   # warnings about unused initialisers etc. are not the user's
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.batch, self.dtype = batch, dtype
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu()
        x = x.round().clamp(0, 255).to(torch.uint8) if self.dtype == "uint8" else x.float()
        n = x.shape[0]
        if self.batch is None or n == self.batch:
            return self._run(x)
        parts = []
        for lo in range(0, n, self.batch):
            chunk = x[lo:lo + self.batch]
            short = self.batch - chunk.shape[0]
            if short:
                chunk = torch.cat([chunk, chunk.new_zeros(short, *chunk.shape[1:])])
            parts.append(self._run(chunk)[:self.batch - short])
        return torch.cat(parts)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.contiguous().numpy()})[0])


@dataclass
class ExportedRun(TrainedRun):
    """A TrainedRun read off an exported file and its sidecar; `model` is an OnnxModel."""

    sidecar: dict | None = None

    @property
    def model_name(self) -> str:
        return self.sidecar["model"]

    @property
    def geometry(self) -> dict:
        g = dict(self.sidecar["preprocess"]["geometry"])
        # The sidecar's geometry is the single view; its eval_view says more.
        if self.view == "ten-crop":
            g["ten_crop"] = True
        elif self.view == "flip":
            g["flip"] = True
        return g

    def input_normalizer(self) -> Normalizer:
        """The sidecar's statistics, already at the input geometry. A file with the normalisation
        inside takes pixels: x / 255 * 255, i.e. mean 0 and std 1/255."""
        pre = self.sidecar["preprocess"]
        c = self.channels
        if pre["included"]:
            return Normalizer(torch.zeros(c, 1, 1), torch.full((c, 1, 1), 1 / 255))
        return Normalizer(_stat(pre["mean"], c), _stat(pre["std"], c))

    def inference_model(self, device) -> nn.Module:
        return self.model   # already the deployed form: folded, and run by onnxruntime on the CPU

    @property
    def precision(self) -> str:
        return self.sidecar.get("precision", "fp32")


def _stat(values, channels: int) -> torch.Tensor:
    """A sidecar statistic: one value per channel, or a per-pixel C x H x W map (nested lists)."""
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(channels, 1, 1) if t.numel() == channels else t


def _bad_sidecar(path: Path, what: str) -> ResnetlabError:
    return ResnetlabError(f"{sidecar_path(path)} {what}; `resnetlab export` writes the file and its "
                          f"sidecar together: export the run again (or copy the sidecar along with "
                          f"{path.name})")


def read_sidecar(path: str | Path) -> dict:
    """The sidecar of an exported file, checked for what eval and predict need."""
    path = Path(path)
    if not path.is_file():
        raise ResnetlabError(f"{path}: no such file; give an .onnx file written by `resnetlab export`")
    side = sidecar_path(path)
    if not side.is_file():
        raise ResnetlabError(f"{path} has no sidecar {side.name} beside it, so its classes and "
                             f"preprocessing are unknown; `resnetlab export` writes both: export the run "
                             f"again, or copy {side.name} along with {path.name}")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise _bad_sidecar(path, f"cannot be read as JSON ({e})") from None
    missing = [k for k in ("format", "classes", "input", "output", "preprocess") if k not in meta]
    if not isinstance(meta, dict) or missing:
        raise _bad_sidecar(path, f"is not an export sidecar (no {', '.join(missing) or 'object'})")
    if meta["format"] != "onnx":
        raise _bad_sidecar(path, f"describes a {meta['format']} export, not ONNX")
    return meta


def _check_against_graph(path: Path, meta: dict, model: OnnxModel) -> None:
    """The sidecar's input and output must be the graph's: else it belongs to another export."""
    (inp,), out = model.session.get_inputs(), model.session.get_outputs()[0]
    want = meta["input"]
    graph_shape = [d if isinstance(d, int) else "batch" for d in inp.shape]
    side_shape = [d if isinstance(d, int) else "batch" for d in want["shape"]]
    problems = []
    if graph_shape[1:] != side_shape[1:] or graph_shape[0] != side_shape[0]:
        problems.append(f"input {'x'.join(map(str, side_shape))} in the sidecar, "
                        f"{'x'.join(map(str, graph_shape))} in the file")
    if _DTYPES.get(want.get("dtype")) != inp.type:
        problems.append(f"input dtype {want.get('dtype')} in the sidecar, {inp.type} in the file")
    classes = out.shape[-1] if out.shape and isinstance(out.shape[-1], int) else None
    if classes is not None and classes != len(meta["classes"]):
        problems.append(f"{len(meta['classes'])} classes in the sidecar, {classes} outputs in the file")
    if problems:
        raise _bad_sidecar(path, "does not match the file (" + "; ".join(problems) + ")")


def load_exported(path: str | Path, threads: int | None = None) -> ExportedRun:
    """An exported ONNX file and its sidecar as a run (onnxruntime, CPU)."""
    path = Path(path)
    meta = read_sidecar(path)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ResnetlabError("running an .onnx file needs onnxruntime: "
                             "pip install 'resnetlab[onnx]'") from None
    shape = meta["input"]["shape"]
    batch = shape[0] if isinstance(shape[0], int) else None
    try:
        model = OnnxModel(path, batch, meta["input"].get("dtype", "float32"), threads)
    except Exception as e:   # onnxruntime raises its own types for a damaged or foreign file
        raise ResnetlabError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {e}); export the "
                             "run again") from None
    _check_against_graph(path, meta, model)
    c, h, w = shape[1:]
    g = meta["preprocess"]["geometry"]
    crop = g["crop"][0] if "crop" in g else None
    view = meta["preprocess"].get("eval_view") or ("center" if crop else "none")
    identity = Normalizer(torch.zeros(c, 1, 1), torch.ones(c, 1, 1))
    return ExportedRun(model=model, classes=list(meta["classes"]), stored_size=(c, h, w),
                       input_size=(c, h, w), normalizer=identity, view=view, crop=crop,
                       run_dir=path.parent, source=path,
                       record=None, sidecar=meta)


class _Pipeline(nn.Module):
    """Pixels (float 0..255, N x C x H x W at the data set's stored size) -> logits, through the
    exported run's own preprocessing (geometry, normalisation, ten crops or flips view-major)."""

    def __init__(self, run: ExportedRun):
        super().__init__()
        self.run, self.norm = run, run.input_normalizer()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.run.normalize(self.run._fit(pixels.float(), crops=True), self.norm)
        return self.run.model(x.flatten(0, 1) if x.ndim == 5 else x)


def evaluate_exported(path: str | Path, data: str | None = None, data_dir: str | None = None,
                      split: str = "test", batch_size: int = 256, threads: int | None = None) -> dict:
    """`resnetlab eval` of an exported file: top-1/top-5 error, per-class accuracy and confusion
    matrix on a data set (default: the one its run was trained on), in onnxruntime."""
    run = load_exported(path, threads)
    origin = run.sidecar.get("data") or {}
    spec = data or origin.get("spec")
    if not spec:
        raise ResnetlabError(f"{sidecar_path(path)} does not name the run's data set (an export from an "
                             "older resnetlab): give --data")
    splits = open_data(spec, data_dir=data_dir or origin.get("data_dir"), image_size=origin.get("image_size"),
                       stream=origin.get("stream") or "auto")
    splits = restrict(splits, origin.get("classes"), None)
    images = getattr(splits, split, None)
    if images is None:
        raise ResnetlabError(f"data set {spec!r} has no {split!r} split")
    if images.shape[0] != run.channels or len(splits.classes) != len(run.classes):
        raise ResnetlabError(f"{spec} ({images.shape[0]} channel(s), {len(splits.classes)} classes) does not "
                             f"match {Path(path).name} ({run.channels} channel(s), {len(run.classes)} "
                             "classes); evaluate it on the data set its run was trained on")
    c = images.shape[0]
    pixels = Normalizer(torch.zeros(c, 1, 1), torch.full((c, 1, 1), 1 / 255))   # x/255*255: the pixels
    loader = loader_for(images, batch_size, train=False, view=View("none"), normalizer=pixels)
    result = evaluate(_Pipeline(run), loader, len(run.classes))
    return {"run": str(path), "data": spec, "split": split, "model": run.model_name,
            "precision": run.precision, "eval_view": run.view, **result.to_dict(run.classes)}


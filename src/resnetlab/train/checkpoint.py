"""Run folders and checkpoints: safetensors weights, JSON state, atomic writes, exact resume.

A checkpoint is a directory `checkpoints/step-00001234/` holding
  model.safetensors   the weights (torchvision-style names)
  ema.safetensors     a run with --ema only: the averaged weights and buffers (the same names)
  lookahead.safetensors  a run with --lookahead only: its slow weights and buffers (the same names)
  optim.safetensors   optimiser buffers and RNG states
  state.json          step, optimiser hyper-parameters, schedule and loop state (+ "ema_updates")
It is written as `step-00001234.tmp/` and renamed into place once complete, so a process killed at
any moment leaves either the old set of checkpoints or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel

from ..errors import ResnetlabError

CHECKPOINTS = "checkpoints"
WEIGHTS = "model.safetensors"   # also the name of a run's final weights (resnetlab.run)
OPTIM = "optim.safetensors"
EMA = "ema.safetensors"         # the weight average of a run with --ema (train/ema.py)
LOOKAHEAD = "lookahead.safetensors"   # the slow weights of a run with --lookahead (train/lookahead.py)
STATE = "state.json"


def failpoint(name: str, step: int | None = None) -> None:
    """Crash testing: with RESNETLAB_FAILPOINT=name (or name@step) the process SIGKILLs itself here,
    as a power cut or the OOM killer would. Used by the fault tests (docs/RELIABILITY.md)."""
    spec = os.environ.get("RESNETLAB_FAILPOINT")
    if not spec:
        return
    want, _, at = spec.partition("@")
    if want == name and (not at or step == int(at)):
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Named tensors as contiguous CPU tensors, the form safetensors stores."""
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict in the form safetensors stores."""
    return cpu_tensors(module.state_dict())


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state_tensors(model), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    failpoint(f"weights-before-rename:{path.name}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, with one clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise ResnetlabError(f"weights file {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ResnetlabError(f"{path} is not a readable safetensors file ({e}); "
                             "use the run's model.safetensors or a checkpoints/step-*/ folder") from None


def load_weights_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in tensors and tensors[k].shape != own[k].shape]
    if missing or extra or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch at {', '.join(wrong[:2])}")
        if missing:
            parts.append(f"{len(missing)} missing tensor(s) such as {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s) such as {extra[0]}")
        raise ResnetlabError(f"{source} does not fit this model ({'; '.join(parts)}): it was saved "
                             "from another architecture or class count; check --model / the run folder")
    model.load_state_dict(tensors, strict=True)


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: dict

    def model_tensors(self) -> dict[str, torch.Tensor]:
        return read_weights(self.path / WEIGHTS)

    def optim_tensors(self) -> dict[str, torch.Tensor]:
        return read_weights(self.path / OPTIM)


def checkpoint_weights(folder: Path) -> Path:
    """A checkpoint folder's weights as its run evaluates them: ema.safetensors when the run averages
    its weights (what its evaluations and final weights use), else model.safetensors."""
    return folder / EMA if (folder / EMA).is_file() else folder / WEIGHTS


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state dict into tensors (for safetensors) and JSON-able metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    saved = [len(g["params"]) for g in meta["param_groups"]]
    wanted = [len(g["params"]) for g in optimizer.param_groups]
    if saved != wanted:
        raise ResnetlabError(
            f"the checkpoint's optimizer has parameter groups of sizes {saved}, this run builds {wanted} "
            "(written by another resnetlab version, or with other --freeze/--backbone-lr-mult settings); "
            "resume with what wrote it, or train again into a new --out folder")
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_tensors(rng_states: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The global RNG state(s): this process's, plus each rank's (`rng.torch.R`) when given."""
    out = {"rng.torch": torch.get_rng_state()}
    for rank, state in enumerate(rng_states or []):
        out[f"rng.torch.{rank}"] = state
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def restore_rng(tensors: dict[str, torch.Tensor], rank: int = 0) -> None:
    state = tensors.get(f"rng.torch.{rank}", tensors.get("rng.torch"))
    if state is not None:
        torch.set_rng_state(state)
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict, keep: int = 2,
                    rng_states: list[torch.Tensor] | None = None, ema: AveragedModel | None = None,
                    lookahead: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoints/step-XXXXXXXX atomically; keep the newest `keep` complete ones. `ema`: the
    run's weight average, saved beside the raw weights with its update count; `lookahead`: the slow
    weights of a --lookahead run."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(state_tensors(model), str(tmp / WEIGHTS))
    failpoint("checkpoint-mid-write", step)
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    save_file({**opt_tensors, **rng_tensors(rng_states)}, str(tmp / OPTIM))
    if ema is not None:
        save_file(state_tensors(ema.module), str(tmp / EMA))
        state = {**state, "ema_updates": int(ema.n_averaged)}
    if lookahead is not None:
        save_file(cpu_tensors(lookahead), str(tmp / LOOKAHEAD))
    (tmp / STATE).write_text(json.dumps({"step": step, "optimizer": opt_meta, **state}, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    failpoint("checkpoint-before-rename", step)
    if final.exists():   # a re-run of the same step (resume after a crash right after the rename)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    failpoint("checkpoint-after-rename", step)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def restore_ema(ema: AveragedModel, ckpt: Checkpoint) -> None:
    """The weight average saved in `ckpt` into `ema`; one clear error when the checkpoint lacks it."""
    path = ckpt.path / EMA
    if not path.is_file() or "ema_updates" not in ckpt.state:
        raise ResnetlabError(f"{ckpt.path} has no weight average ({EMA} and the update count in {STATE}), "
                             "but this run averages its weights (--ema): the checkpoint is damaged or was "
                             "written without it; delete that step folder to resume from an older one")
    load_weights_into(ema.module, read_weights(path), str(path))
    ema.n_averaged.fill_(int(ckpt.state["ema_updates"]))


def lookahead_tensors(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """The slow weights saved in `ckpt`; one clear error when the checkpoint lacks them."""
    path = ckpt.path / LOOKAHEAD
    if not path.is_file():
        raise ResnetlabError(f"{ckpt.path} has no {LOOKAHEAD}, but this run uses --lookahead: the "
                             "checkpoint is damaged or was written without it; delete that step folder "
                             "to resume from an older one")
    return read_weights(path)


def list_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """Complete checkpoints, oldest first; half-written (.tmp) or unreadable ones are skipped."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    for d in sorted(root.glob("step-*")) if root.is_dir() else []:
        if d.suffix == ".tmp" or not (d / STATE).is_file():
            continue
        try:
            state = json.loads((d / STATE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append(Checkpoint(d, int(state["step"]), state))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None

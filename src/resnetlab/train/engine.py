"""Pick precision, memory format and compilation by timing them on the machine at hand.

A few training steps of each candidate set-up (fp32 / bf16 autocast / fp16 on CUDA, with and
without channels_last) are timed at the run's batch shape; the fastest wins and is cached per
(model, input, batch, device, torch version, threads). torch.compile is tried only for runs long
enough to repay its compile time. The choice is written into the run's config.json; a resumed
run reads it from there and never probes again, so its arithmetic stays identical.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..models.classic import classic_loss
from ..paths import cache_root

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """`t` in fp32, or in fp64 if it is fp64: losses and statistics are never taken in bf16/fp16."""
    return t if t.dtype == torch.float64 else t.float()


@dataclass
class Engine:
    device: str = "cpu"
    precision: str = "fp32"        # fp32 | bf16 | fp16 (autocast) | fp64 (weights and inputs)
    channels_last: bool = False
    compile: bool = False
    threads: int = 0
    chosen_by: str = "flags"       # flags | probe | cache | resume
    probe: dict = field(default_factory=dict)   # candidate -> images/s measured

    def autocast(self):
        if self.precision not in _DTYPES:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=_DTYPES[self.precision])

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights and of the network's input (autocast lowers inside)."""
        return torch.float64 if self.precision == "fp64" else torch.float32

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def label(self) -> str:
        return (f"{self.precision}{' + channels_last' if self.channels_last else ''}"
                f"{' + compile' if self.compile else ''} on {self.device}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Engine:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        from ..errors import ResnetlabError
        raise ResnetlabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        from ..errors import ResnetlabError
        raise ResnetlabError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def machine_id(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} x{torch.get_num_threads()}"


class _Trial:
    """One candidate set-up, ready to time: its own model copy, optimiser and random batch."""

    def __init__(self, model: nn.Module, engine: Engine, shape: tuple[int, ...], batch: int,
                 num_classes: int):
        self.device = torch.device(engine.device)
        self.engine = engine
        model = model.to(self.device, engine.dtype, memory_format=engine.memory_format).train()
        self.model = torch.compile(model) if engine.compile else model
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        self.x = torch.randn(batch, *shape, device=self.device, dtype=engine.dtype).contiguous(
            memory_format=engine.memory_format)
        self.y = torch.randint(0, num_classes, (batch,), device=self.device)
        self.batch, self.times = batch, []

    def step(self) -> float:
        t0 = time.perf_counter()
        with self.engine.autocast():
            loss = classic_loss(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def rate(self) -> float:
        return self.batch / statistics.median(self.times)


def time_candidates(build: Callable[[], nn.Module], engines: list[Engine], shape: tuple[int, ...],
                    batch: int, num_classes: int, seconds: float = 1.0, rounds: int = 4) -> list[float]:
    """Images per second of full SGD training steps of each candidate, on random data.

    Candidates are timed in alternating rounds (A B C, A B C, ...) and each one's median step time
    kept: a shared machine's speed drifts, and alternation spreads the drift over all candidates
    instead of penalising whichever ran during a slow spell. About `seconds` per candidate in all.
    """
    trials = [_Trial(build(), e, shape, batch, num_classes) for e in engines]
    for t in trials:          # warm-up: first-call kernel selection, allocator growth
        t.step()
        t.step()
    budget = seconds / rounds
    for _ in range(rounds):
        for t in trials:
            t_end = time.perf_counter() + budget
            t.times.append(t.step())
            while time.perf_counter() < t_end and len(t.times) < 10 * rounds:
                t.times.append(t.step())
    return [t.rate() for t in trials]


def time_steps(model: nn.Module, engine: Engine, shape: tuple[int, ...], batch: int, num_classes: int,
               min_seconds: float = 1.0) -> float:
    """Images per second of one set-up (used for the torch.compile trial)."""
    return time_candidates(lambda: model, [engine], shape, batch, num_classes, min_seconds, rounds=2)[0]


def _load_cache() -> dict:
    try:
        return json.loads((cache_root() / "engine.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_cache(cache: dict) -> None:
    with contextlib.suppress(OSError):
        from .checkpoint import write_json
        cache_root().mkdir(parents=True, exist_ok=True)
        write_json(cache_root() / "engine.json", cache)


def choose_engine(build: Callable[[], nn.Module], key: str, shape: tuple[int, ...], batch: int,
                  num_classes: int, device: torch.device, precision: str = "auto",
                  channels_last: str = "auto", compile: str = "auto", expected_steps: int = 0,
                  log: Callable[[str], None] = print) -> Engine:
    """The fastest set-up among the candidates the flags leave open (see module docstring)."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precisions = [precision] if precision != "auto" else (
        ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    layouts = [channels_last == "on"] if channels_last != "auto" else [False, True]
    if device.type == "mps":
        precisions = [p for p in precisions if p != "bf16"] or ["fp32"]
    base = Engine(device=str(device), threads=threads)
    candidates = [Engine(**{**asdict(base), "precision": p, "channels_last": cl})
                  for p, cl in itertools.product(precisions, layouts)]
    if len(candidates) == 1 and compile != "auto":
        candidates[0].compile = compile == "on"
        return candidates[0]

    cache = _load_cache()
    ckey = f"{key}|{tuple(shape)}|b{batch}|{machine_id(device)}|torch {torch.__version__}"
    entry = cache.get(ckey, {})
    def label(e: Engine) -> str:
        return f"{e.precision}{'+cl' if e.channels_last else ''}"

    todo = [c for c in candidates if label(c) not in entry]
    probed = bool(todo)
    if todo:
        for cand, rate in zip(todo, time_candidates(build, todo, shape, batch, num_classes), strict=True):
            entry[label(cand)] = round(rate, 1)
    rates = {label(c): entry[label(c)] for c in candidates}
    best_name = max(rates, key=rates.get)
    best = next(c for c in candidates if label(c) == best_name)
    best.chosen_by, best.probe = ("probe" if probed else "cache"), dict(rates)

    if compile == "on":
        best.compile = True
    elif compile == "auto" and device.type != "mps":
        # Compiling costs tens of seconds on a CPU: try it only when the eager run would take
        # over 10 minutes, and keep it only if it saves more time than it costs.
        eager_seconds = expected_steps * batch / rates[best_name]
        cname = best_name + "+compile"
        if eager_seconds > 600 and cname not in entry:
            t0 = time.perf_counter()
            trial = Engine(**{**asdict(best), "compile": True})
            try:
                entry[cname] = round(time_steps(build(), trial, shape, batch, num_classes, 2.0), 1)
            except Exception as e:   # a compiler missing or failing is a reason not to compile
                log(f"torch.compile unavailable here ({type(e).__name__}); training eagerly")
                entry[cname] = 0.0
            entry[cname + ":seconds"] = round(time.perf_counter() - t0, 1)
        if entry.get(cname):
            rates[cname] = entry[cname]
            saved = eager_seconds - expected_steps * batch / entry[cname]
            if entry[cname] > 1.05 * rates[best_name] and saved > entry.get(cname + ":seconds", 60):
                best.compile = True
        best.probe = dict(rates)
    cache[ckey] = entry
    _save_cache(cache)
    return best

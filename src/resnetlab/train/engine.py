"""Pick precision, memory format and compilation by timing them on the machine at hand.

A few training steps of each candidate set-up (fp32 / bf16 autocast / fp16 on CUDA, with and
without channels_last) are timed at the run's batch shape; the fastest wins and is cached per
(model, input, batch, device, torch version, threads). The probe costs seconds: on a CPU one timed
convolution first decides whether bf16 is native (if not, bf16 models are not timed at all), and a
candidate whose first timed step is over twice the best one's is dropped there. torch.compile is
tried only for runs long enough to repay its compile time. The choice is written into the run's
config.json; a resumed run reads it from there and never probes again, so its arithmetic stays
identical.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..models import loss_and_logits
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
    probe_seconds: float = 0.0     # what choosing cost this run (0 for flags; ~0 from the cache)
    notes: str = ""                # e.g. why bf16 was not timed

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
    # The kernels PyTorch and oneDNN may use are part of the machine: the same CPU held to AVX2
    # (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, as `make test-avx2` and the Zen 3 emulation do) has
    # other rates, and no native bf16; a cached choice must not cross that line.
    kernels = torch.backends.cpu.get_cpu_capability()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"{cpu} x{torch.get_num_threads()} {kernels}" + (f" onednn<={isa.lower()}" if isa else "")


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
            loss, _ = loss_and_logits(self.model, self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def rate(self) -> float:
        return self.batch / statistics.median(self.times)


def time_candidates(build: Callable[[], nn.Module], engines: list[Engine], shape: tuple[int, ...],
                    batch: int, num_classes: int, seconds: float = 1.0, rounds: int = 4,
                    drop_above: float = 2.0) -> list[float]:
    """Images per second of full SGD training steps of each candidate, on random data.

    Candidates are timed in alternating rounds (A B C, A B C, ...) and each one's median step time
    kept: a shared machine's speed drifts, and alternation spreads the drift over all candidates
    instead of penalising whichever ran during a slow spell. About `seconds` per candidate in all.
    A candidate whose first timed step takes over `drop_above` times the fastest one's is dropped
    there (its rate is that step's): it cannot win, and timing it longer only costs the user time.
    """
    trials = [_Trial(build(), e, shape, batch, num_classes) for e in engines]
    for t in trials:          # warm-up: first-call kernel selection, allocator growth
        t.step()
    for t in trials:
        t.times.append(t.step())
    fastest = min(t.times[0] for t in trials)
    live = [t for t in trials if t.times[0] <= drop_above * fastest]
    budget = seconds / rounds
    for _ in range(rounds):
        for t in live:
            t_end = time.perf_counter() + budget
            t.times.append(t.step())
            while time.perf_counter() < t_end and len(t.times) < 10 * rounds:
                t.times.append(t.step())
    return [t.rate() for t in trials]


def native_bf16(device: torch.device, cache: dict | None = None) -> tuple[bool, str]:
    """Whether bf16 autocast can pay on this CPU, from one convolution (forward + backward, the
    shape of a small ResNet stage) timed in fp32 and in bf16: (worth probing, why). On a CPU that
    emulates bf16 (AVX2 only: ten times slower than fp32) this costs a second, where timing whole
    bf16 models costs minutes. Other devices: always worth probing."""
    if device.type != "cpu":
        return True, ""
    key = f"bf16-conv|{machine_id(device)}|torch {torch.__version__}"
    if cache is not None and key in cache:
        fp32_ms, bf16_ms = cache[key]
    else:
        conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
        x = torch.randn(32, 64, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()

        def once(dtype) -> float:
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                conv(x).float().sum().backward()
            return time.perf_counter() - t0
        times = {"fp32": [], "bf16": []}
        for _ in range(6):   # alternating; the first of each is warm-up
            for dtype in times:
                times[dtype].append(once(dtype))
        # The fastest of each: other work on the machine only ever adds time, so the minimum is the
        # estimate least disturbed by it (a busy machine must not hide a native bf16, or fake one).
        fp32_ms, bf16_ms = (round(1e3 * min(times[d][1:]), 3) for d in ("fp32", "bf16"))
        if cache is not None:
            cache[key] = [fp32_ms, bf16_ms]
    if bf16_ms < fp32_ms:
        return True, ""
    return False, (f"a bf16 convolution takes {bf16_ms / fp32_ms:.1f}x the fp32 one's time on this CPU "
                   "(no native bf16)")


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

    t_start = time.perf_counter()
    cache = _load_cache()
    notes = ""
    if precision == "auto" and any(c.precision == "bf16" for c in candidates):
        worth, notes = native_bf16(device, cache)
        if not worth:
            candidates = [c for c in candidates if c.precision != "bf16"]
    ckey = f"{key}|{tuple(shape)}|b{batch}|{machine_id(device)}|torch {torch.__version__}"
    entry = cache.get(ckey, {})
    def label(e: Engine) -> str:
        return f"{e.precision}{'+cl' if e.channels_last else ''}"

    todo = [c for c in candidates if label(c) not in entry]
    probed = bool(todo)
    if todo:
        log(f"engine probe for {key} ({'x'.join(map(str, shape))}, batch {batch}): timing "
            f"{', '.join(label(c) for c in todo)}" + (f"; bf16 not timed: {notes}" if notes else ""))
        for cand, rate in zip(todo, time_candidates(build, todo, shape, batch, num_classes), strict=True):
            entry[label(cand)] = round(rate, 1)
    rates = {label(c): entry[label(c)] for c in candidates}
    best_name = max(rates, key=rates.get)
    best = next(c for c in candidates if label(c) == best_name)
    best.chosen_by, best.probe, best.notes = ("probe" if probed else "cache"), dict(rates), notes

    if compile == "on":
        best.compile = True
    elif compile == "auto" and device.type != "mps":
        # Compiling costs a minute on a 2-core CPU: try it only when the eager run would take over
        # 30 minutes, and keep it only if it saves more time than it costs.
        eager_seconds = expected_steps * batch / rates[best_name]
        cname = best_name + "+compile"
        if eager_seconds > 1800 and cname not in entry:
            log(f"trying torch.compile for this {eager_seconds / 60:.0f}-minute run (compiling takes up to "
                "a minute; kept only if it saves more than it costs)")
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
    best.probe_seconds = round(time.perf_counter() - t_start, 2)
    if probed:
        log(f"engine probe: {', '.join(f'{k} {v:.0f}' for k, v in rates.items())} img/s; chose "
            f"{best.label()} in {best.probe_seconds:.1f} s")
    return best

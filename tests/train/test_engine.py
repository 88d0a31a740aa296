import pytest
import torch

import resnetlab.train.engine as engine_mod
from resnetlab import create_model
from resnetlab.train.engine import Engine, choose_engine, resolve_device


def build():
    return create_model("resnet8", num_classes=4, in_channels=1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def fake_rates(monkeypatch, rates, calls):
    def name_of(engine):
        name = engine.precision + ("+cl" if engine.channels_last else "")
        return name + ("+compile" if engine.compile else "")

    def fake_many(build, engines, *a, **k):
        calls.extend(name_of(e) for e in engines)
        return [rates[name_of(e)] for e in engines]

    def fake_one(model, engine, *a, **k):
        calls.append(name_of(engine))
        return rates[name_of(engine)]

    monkeypatch.setattr(engine_mod, "time_candidates", fake_many)
    monkeypatch.setattr(engine_mod, "time_steps", fake_one)
    # Whatever this CPU's bf16: these tests are about the choice, not the machine.
    monkeypatch.setattr(engine_mod, "native_bf16", lambda device, cache=None: (True, ""))


def test_fixed_flags_skip_the_probe(monkeypatch):
    calls = []
    fake_rates(monkeypatch, {}, calls)
    e = choose_engine(build, "resnet8", (1, 12, 12), 32, 4, torch.device("cpu"), "fp32", "on", "off")
    assert (e.precision, e.channels_last, e.compile, e.chosen_by) == ("fp32", True, False, "flags")
    assert calls == []


def test_probe_picks_the_fastest_and_caches_it(monkeypatch):
    calls = []
    fake_rates(monkeypatch, {"fp32": 100, "fp32+cl": 150, "bf16": 120, "bf16+cl": 90}, calls)
    e = choose_engine(build, "resnet8", (1, 12, 12), 32, 4, torch.device("cpu"), compile="off")
    assert (e.precision, e.channels_last, e.chosen_by) == ("fp32", True, "probe")
    assert sorted(calls) == ["bf16", "bf16+cl", "fp32", "fp32+cl"]
    calls.clear()
    again = choose_engine(build, "resnet8", (1, 12, 12), 32, 4, torch.device("cpu"), compile="off")
    assert calls == [] and again.chosen_by == "cache" and again.probe == e.probe
    # A different batch shape is a different entry.
    choose_engine(build, "resnet8", (1, 12, 12), 64, 4, torch.device("cpu"), compile="off")
    assert len(calls) == 4


def test_flags_narrow_the_candidates(monkeypatch):
    calls = []
    fake_rates(monkeypatch, {"fp32": 100, "fp32+cl": 150, "bf16": 120, "bf16+cl": 90}, calls)
    e = choose_engine(build, "m", (1, 12, 12), 32, 4, torch.device("cpu"), precision="bf16", compile="off")
    assert (e.precision, e.channels_last) == ("bf16", False) and sorted(calls) == ["bf16", "bf16+cl"]


def test_compile_is_tried_only_for_long_runs_and_kept_only_if_it_pays(monkeypatch):
    calls = []
    rates = {"fp32": 100, "fp32+cl": 150, "bf16": 120, "bf16+cl": 90, "fp32+cl+compile": 300}
    fake_rates(monkeypatch, rates, calls)
    short = choose_engine(build, "m", (1, 12, 12), 32, 4, torch.device("cpu"), expected_steps=10)
    assert not short.compile and "fp32+cl+compile" not in calls
    long = choose_engine(build, "m", (1, 12, 12), 32, 4, torch.device("cpu"), expected_steps=100_000)
    assert long.compile and "fp32+cl+compile" in calls


def test_real_probe_on_a_tiny_model_returns_positive_rates():
    e = choose_engine(build, "resnet8", (1, 8, 8), 8, 4, torch.device("cpu"), channels_last="off",
                      compile="off")
    # bf16 is timed only where one convolution says it is native (e.notes says why not).
    assert set(e.probe) == ({"fp32"} if e.notes else {"fp32", "bf16"})
    assert all(v > 0 for v in e.probe.values())
    assert e.probe[f"{e.precision}"] == max(e.probe.values())


def test_engine_record_roundtrip_and_autocast():
    e = Engine(precision="bf16", channels_last=True, chosen_by="probe", probe={"bf16+cl": 1.0})
    assert Engine.from_dict({**e.to_dict(), "unknown_future_key": 1}) == e
    with e.autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    assert e.memory_format == torch.channels_last and "bf16 + channels_last" in e.label()


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        from resnetlab import ResnetlabError
        with pytest.raises(ResnetlabError, match="no CUDA"):
            resolve_device("cuda")


def test_without_native_bf16_the_probe_times_only_fp32_and_says_why(monkeypatch):
    calls, lines = [], []
    fake_rates(monkeypatch, {"fp32": 100, "fp32+cl": 150, "bf16": 900, "bf16+cl": 900}, calls)
    monkeypatch.setattr(engine_mod, "native_bf16", lambda device, cache=None: (False, "emulated here"))
    e = choose_engine(build, "m", (1, 12, 12), 32, 4, torch.device("cpu"), compile="off", log=lines.append)
    assert sorted(calls) == ["fp32", "fp32+cl"] and (e.precision, e.channels_last) == ("fp32", True)
    assert e.notes == "emulated here" and set(e.probe) == {"fp32", "fp32+cl"}
    assert any("bf16 not timed: emulated here" in line for line in lines)
    assert any(line.startswith("engine probe: fp32 100, fp32+cl 150 img/s; chose fp32") for line in lines)
    assert e.probe_seconds >= 0 and "probe_seconds" in e.to_dict()
    # Asked for by name, bf16 is used whatever the check says.
    forced = choose_engine(build, "m", (1, 12, 12), 32, 4, torch.device("cpu"), precision="bf16",
                           compile="off", log=lines.append)
    assert forced.precision == "bf16"


def test_native_bf16_check_times_one_convolution_and_is_cached():
    cache = {}
    worth, why = engine_mod.native_bf16(torch.device("cpu"), cache)
    assert isinstance(worth, bool) and (why == "") == worth
    (key, (fp32_ms, bf16_ms)), = cache.items()
    assert key.startswith("bf16-conv|") and fp32_ms > 0 and bf16_ms > 0
    cache[key] = [1.0, 10.0]   # the cached timing is what decides next time
    assert engine_mod.native_bf16(torch.device("cpu"), cache) == (
        False, "a bf16 convolution takes 10.0x the fp32 one's time on this CPU (no native bf16)")


def test_a_candidate_twice_as_slow_as_the_best_is_dropped_after_one_timed_step(monkeypatch):
    steps = {"fp32": 0.01, "bf16": 0.05}   # seconds per step, by precision
    counts = {"fp32": 0, "bf16": 0}

    class FakeTrial:
        def __init__(self, model, engine, *a):
            self.engine, self.batch, self.times = engine, 32, []

        def step(self):
            counts[self.engine.precision] += 1
            return steps[self.engine.precision]

        rate = engine_mod._Trial.rate

    monkeypatch.setattr(engine_mod, "_Trial", FakeTrial)
    rates = engine_mod.time_candidates(build, [Engine(precision="fp32"), Engine(precision="bf16")],
                                       (1, 8, 8), 32, 4, seconds=0.0)
    assert counts["bf16"] == 2 and counts["fp32"] > 2   # warm-up + the one timed step, then dropped
    assert rates == [pytest.approx(3200), pytest.approx(640)]


def test_the_cache_key_names_the_kernels_so_an_avx2_run_never_reads_a_native_choice(monkeypatch):
    """The same CPU held to AVX2 (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA) has other rates and no
    native bf16: its cached probe results must live under another key (a run under the AVX2
    emulation once took the native machine's cached bf16 choice and ran 10x slower)."""
    native = engine_mod.machine_id(torch.device("cpu"))
    assert torch.backends.cpu.get_cpu_capability() in native
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    held = engine_mod.machine_id(torch.device("cpu"))
    assert held != native and held.endswith("AVX2 onednn<=avx2")

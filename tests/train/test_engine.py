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
    assert set(e.probe) == {"fp32", "bf16"} and all(v > 0 for v in e.probe.values())
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

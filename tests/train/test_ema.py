"""resnetlab.train.ema and --ema in the loop: the average is the one computed by hand, evaluations and
the final weights use it, checkpoints hold it, and a resumed run ends bit-identical."""

import json
import shutil

import pytest
import torch
from fakedata import write_fashion_like
from procs import train_until_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file

from resnetlab import ResnetlabError
from resnetlab.run import find_run
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.ema import WeightEMA
from resnetlab.train.evaluate import evaluate_run
from resnetlab.train.loop import TrainConfig, resume, train
from resnetlab.train.recipe import get_recipe

FIXED = dict(precision="fp32", channels_last="off", compile="off")


@pytest.fixture
def data_dir(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    return str(tmp_path / "data")


def config(out, data_dir, **overrides):
    return TrainConfig(model="resnet8", data="fashion-mnist", data_dir=data_dir, out=str(out),
                       recipe=get_recipe("fast", **{**FIXED, "batch_size": 32, **overrides}))


def by_hand(snapshots: list[dict], decay: float) -> dict:
    """The EMA of the per-step weights in float64: the first copied, then the warmed-up decay;
    integer buffers (num_batches_tracked) follow the model."""
    avg = {k: v.double() if v.is_floating_point() else v for k, v in snapshots[0].items()}
    for t, w in enumerate(snapshots[1:], start=1):
        d = min(decay, (1 + t) / (10 + t))
        avg = {k: d * avg[k] + (1 - d) * w[k].double() if w[k].is_floating_point() else w[k] for k in w}
    return avg


def test_decay_warms_up_then_stays_at_the_given_value():
    ema = WeightEMA(torch.nn.Linear(2, 2), 0.6)
    decays = []
    for t in range(16):
        ema.n_averaged.fill_(t)
        decays.append(ema.decay_now())
    assert decays[:3] == pytest.approx([0.1, 2 / 11, 3 / 12])
    assert decays[12] == pytest.approx(13 / 22) and decays[13:] == [0.6] * 3


def test_the_average_covers_parameters_and_batchnorm_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema, snapshots = WeightEMA(model, 0.9), []
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for i in range(5):
        loss = model(torch.randn(8, 3, generator=torch.Generator().manual_seed(i))).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    want, got = by_hand(snapshots, 0.9), ema.module.state_dict()
    assert got.keys() == want.keys() and ema.updates == 5
    for k in want:
        assert torch.allclose(got[k].double(), want[k].double(), rtol=1e-6, atol=1e-7), k
    assert got["1.num_batches_tracked"].item() == 5
    assert not torch.allclose(got["1.running_mean"], model[1].running_mean)   # averaged, not copied


def test_an_ema_run_evaluates_and_saves_the_average_of_its_steps(tmp_path, data_dir, monkeypatch):
    snapshots, real = [], WeightEMA.update_parameters

    def record(self, model):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        real(self, model)

    monkeypatch.setattr(WeightEMA, "update_parameters", record)
    out = tmp_path / "run"
    summary = train(config(out, data_dir, epochs=2, ema=0.6), progress=False)
    assert len(snapshots) == summary["steps"] == 16

    final = load_file(str(out / "model.safetensors"))
    want = by_hand(snapshots, 0.6)
    for k in want:
        assert torch.allclose(final[k].double(), want[k].double(), rtol=1e-5, atol=1e-6), k
    last = list_checkpoints(out)[-1]
    assert last.step == 16 and last.state["ema_updates"] == 16
    raw, average = (load_file(str(last.path / name)) for name in ("model.safetensors", "ema.safetensors"))
    assert all(torch.equal(final[k], average[k]) for k in final)      # the final weights are the average
    assert all(torch.equal(raw[k], snapshots[-1][k]) for k in raw)    # the checkpoint keeps the raw ones too
    assert not torch.equal(final["fc.weight"], raw["fc.weight"])
    # the run's reported result is the average's: `resnetlab eval` of the final weights agrees
    assert evaluate_run(out, data_dir=data_dir)["loss"] == pytest.approx(
        [json.loads(line) for line in (out / "metrics.jsonl").open()][-1]["test_loss"], rel=1e-5)
    # a checkpoint folder stands for the weights its run evaluates
    assert find_run(last.path)[1] == last.path / "ema.safetensors"
    assert find_run(last.path / "model.safetensors")[1] == last.path / "model.safetensors"


def test_an_interrupted_ema_run_resumes_to_identical_weights(tmp_path, data_dir, monkeypatch):
    recipe = dict(epochs=3, ema=0.9, bn_weight_decay=0.0)
    full = tmp_path / "full"
    train(config(full, data_dir, **recipe), progress=False)

    part = tmp_path / "part"
    cfg = config(part, data_dir, **recipe)
    cfg.checkpoint_every = 3
    train_until_checkpoint(cfg, monkeypatch, 3)   # stops mid-epoch, right after a checkpoint
    ckpt = list_checkpoints(part)[-1]
    assert ckpt.step == 8 and ckpt.state["ema_updates"] == 8
    assert [g["weight_decay"] for g in ckpt.state["optimizer"]["param_groups"]] == [5e-4, 0.0, 5e-4, 0.0]

    # a checkpoint of an ema run without its average is one clear error, not a silent restart
    damaged = tmp_path / "damaged"
    shutil.copytree(part, damaged)
    (damaged / "checkpoints" / ckpt.path.name / "ema.safetensors").unlink()
    with pytest.raises(ResnetlabError, match=r"no weight average .*--ema"):
        resume(str(damaged), progress=False)

    resume(str(part), progress=False)
    # Bit-identical tensors and the same metadata (the file's bytes may still differ: safetensors
    # writes its metadata from a hash map, in no fixed order).
    a, b = (safe_open(str(run / "model.safetensors"), "pt") for run in (full, part))
    assert a.metadata() == b.metadata() and a.keys() == b.keys()
    assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    strip = lambda path: [{k: v for k, v in json.loads(x).items() if k not in ("time", "images_per_s")}  # noqa: E731
                          for x in path.read_text().splitlines()]
    assert strip(full / "metrics.jsonl") == strip(part / "metrics.jsonl")

"""resnetlab.train.lookahead and --lookahead in the loop: syncs happen on the schedule and move the
weights as computed by hand, the run ends on the slow weights, checkpoints hold them, and a resumed
run ends bit-identical."""

import json
import shutil

import pytest
import torch
from fakedata import write_fashion_like
from procs import train_until_checkpoint
from safetensors.torch import load_file

from resnetlab import ResnetlabError
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.lookahead import Lookahead
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


def test_decay_rises_as_the_cube_of_the_run_and_is_one_at_the_end():
    la = Lookahead(torch.nn.Linear(2, 2), 0.8, every=3)
    assert la.decay(0, 10) == 0.0
    assert la.decay(5, 10) == pytest.approx(0.8 * 0.125)
    assert la.decay(9, 10) == pytest.approx(0.8 * 0.729)
    assert la.decay(10, 10) == 1.0


def test_syncs_pull_weights_and_batchnorm_statistics_onto_the_slow_copy():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    la = Lookahead(model, 0.8, every=3)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for v in model.state_dict().values():
            v.add_(1)                       # integer buffers too: they are not the slow copy's
    moved = {k: v.clone() for k, v in model.state_dict().items()}
    for step in (1, 2, 4):                  # not a sync step: nothing changes
        la.after_step(model, step, 10)
        assert all(torch.equal(v, moved[k]) for k, v in model.state_dict().items())
    la.after_step(model, 3, 10)
    d = 0.8 * 0.3 ** 3
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert torch.equal(v, moved[k])
            continue
        want = start[k] + (1 - d) * (moved[k] - start[k])
        assert torch.allclose(v, want) and torch.allclose(la.slow[k], want), k
    with torch.no_grad():
        model[0].weight.add_(5)
    la.after_step(model, 10, 10)            # the last step: the weights take the slow copy as it is
    assert torch.equal(model[0].weight, la.slow["0.weight"])
    assert torch.allclose(model[0].weight, start["0.weight"] + (1 - d))


def test_a_lookahead_run_ends_on_its_slow_weights(tmp_path, data_dir):
    out, plain = tmp_path / "la", tmp_path / "plain"
    train(config(out, data_dir, epochs=2, lookahead=0.7, lookahead_steps=3), progress=False)
    train(config(plain, data_dir, epochs=2), progress=False)
    final = load_file(str(out / "model.safetensors"))
    last = list_checkpoints(out)[-1]
    assert last.step == 16
    slow = load_file(str(last.path / "lookahead.safetensors"))
    assert all(torch.equal(final[k], slow[k]) for k in slow)
    assert not torch.equal(final["fc.weight"], load_file(str(plain / "model.safetensors"))["fc.weight"])
    assert json.loads((out / "config.json").read_text())["config"]["recipe"]["lookahead"] == 0.7


def test_an_interrupted_lookahead_run_resumes_to_identical_weights(tmp_path, data_dir, monkeypatch):
    recipe = dict(epochs=3, lookahead=0.7, lookahead_steps=5)
    full = tmp_path / "full"
    train(config(full, data_dir, **recipe), progress=False)

    part = tmp_path / "part"
    cfg = config(part, data_dir, **recipe)
    cfg.checkpoint_every = 3
    train_until_checkpoint(cfg, monkeypatch, 3)   # step 8: between two syncs (5 and 10)
    ckpt = list_checkpoints(part)[-1]
    assert ckpt.step == 8 and (ckpt.path / "lookahead.safetensors").is_file()

    damaged = tmp_path / "damaged"
    shutil.copytree(part, damaged)
    (damaged / "checkpoints" / ckpt.path.name / "lookahead.safetensors").unlink()
    with pytest.raises(ResnetlabError, match=r"no lookahead.safetensors.*--lookahead"):
        resume(str(damaged), progress=False)

    resume(str(part), progress=False)
    a, b = (load_file(str(run / "model.safetensors")) for run in (full, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [dict(lookahead=1.0), dict(lookahead=-0.1),
                                 dict(lookahead=0.5, lookahead_steps=0)])
def test_bad_lookahead_flags_are_one_clear_error(bad):
    with pytest.raises(ResnetlabError, match="--lookahead"):
        get_recipe("fast", **bad)

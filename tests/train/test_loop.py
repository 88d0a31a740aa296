import json
import math

import pytest
import torch
from fakedata import write_fashion_like
from procs import train_until_checkpoint
from safetensors.torch import load_file

from resnetlab import ResnetlabError, register_model
from resnetlab.train.checkpoint import list_checkpoints
from resnetlab.train.loop import Diverged, TrainConfig, resume, train
from resnetlab.train.recipe import get_recipe

# Fixed engine flags: no timing probe in tests (it is exercised in test_engine.py).
FIXED = dict(precision="fp32", channels_last="off", compile="off")


@pytest.fixture
def data_dir(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    return str(tmp_path / "data")


def config(out, data_dir, model="resnet8", recipe="fast", **overrides):
    overrides = {**FIXED, **overrides}
    return TrainConfig(model=model, data="fashion-mnist", data_dir=data_dir, out=str(out),
                       recipe=get_recipe(recipe, **overrides))


def test_training_writes_a_complete_run_folder_and_learns(tmp_path, data_dir):
    out = tmp_path / "run"
    summary = train(config(out, data_dir, epochs=6, batch_size=32, lr=0.2), progress=False)
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "preprocess.safetensors",
                 "summary.json"):
        assert (out / name).is_file(), name
    assert summary["test_top1_error"] < 0.2   # the synthetic classes are easy
    assert summary["steps"] == 6 * (256 // 32)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["engine"]["precision"] == "fp32" and cfg["engine"]["chosen_by"] == "flags"
    assert cfg["classes"][:2] == ["T-shirt/top", "Trouser"] and cfg["input_size"] == [1, 12, 12]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rec = [r for r in records if r["kind"] == "train"]
    eval_rec = [r for r in records if r["kind"] == "eval"]
    assert {"step", "epoch", "lr", "train_loss", "train_error", "images_per_s", "time"} <= set(train_rec[0])
    assert {"test_top1_error", "test_top5_error", "test_loss"} <= set(eval_rec[0])
    assert len(eval_rec) == 6    # one evaluation per epoch
    assert len(list_checkpoints(out)) == 2    # only the newest two are kept
    weights = load_file(str(out / "model.safetensors"))
    assert "layer1.0.conv1.weight" in weights and "fc.weight" in weights


def test_paper_cifar_short_run_follows_the_schedule(tmp_path, data_dir):
    out = tmp_path / "paper"
    cfg = config(out, data_dir, recipe="paper-cifar", iterations=16)
    cfg.log_every = 1
    train(cfg, progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["recipe"]["batch_size"] == 128
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
           if r["kind"] == "train"}
    assert [lrs[s] for s in (1, 8, 9, 12, 13, 16)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_validation_split_is_held_out(tmp_path, data_dir):
    out = tmp_path / "val"
    summary = train(config(out, data_dir, epochs=1, batch_size=32, val_split=64), progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["train_images"] == 192 and saved["val_images"] == 64
    assert "val_top1_error" in summary


def test_existing_run_folder_is_not_overwritten(tmp_path, data_dir):
    out = tmp_path / "run"
    train(config(out, data_dir, epochs=1, batch_size=64), progress=False)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(ResnetlabError, match="already holds a run"):
        train(config(out, data_dir, epochs=1, batch_size=64), progress=False)
    assert (out / "model.safetensors").read_bytes() == before


class _NaNAfter(torch.nn.Module):
    """A net whose output turns NaN after `after` training forward passes."""

    def __init__(self, num_classes=4, in_channels=1, after=10):
        super().__init__()
        self.fc = torch.nn.Linear(in_channels * 144, num_classes)
        self.calls, self.after = 0, after

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.fc(x.flatten(1))
        return out * math.nan if self.calls > self.after else out


@register_model(family="classic", default_classes=4)
def test_nan_after_10(num_classes=4, in_channels=1):
    return _NaNAfter(num_classes, in_channels, after=10)


test_nan_after_10.__test__ = False   # a model builder, not a test for pytest to collect


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    out = tmp_path / "nan"
    cfg = config(out, data_dir, model="test_nan_after_10", epochs=3, batch_size=32)
    with pytest.raises(Diverged, match=r"loss became nan at step 11 .*lr .*checkpoint .*step 8") as e:
        train(cfg, progress=False)
    assert "--lr" in str(e.value)
    assert [c.step for c in list_checkpoints(out)] == [8]   # epoch 1 ended at step 8
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("other_threads", [False, True])
def test_interrupted_run_resumes_to_identical_weights_in_process(tmp_path, data_dir, monkeypatch,
                                                                 other_threads):
    full = tmp_path / "full"
    train(config(full, data_dir, epochs=3, batch_size=32), progress=False)

    part = tmp_path / "part"
    cfg = config(part, data_dir, epochs=3, batch_size=32)
    cfg.checkpoint_every = 3
    train_until_checkpoint(cfg, monkeypatch, 3)   # stops mid-epoch, right after a checkpoint
    threads = torch.get_num_threads()
    assert json.loads((part / "config.json").read_text())["engine"]["threads"] == threads
    if other_threads:   # resumed by a process with another thread count: the run's own is used
        torch.set_num_threads(1 if threads > 1 else 2)
    try:
        resume(str(part), progress=False)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(threads)

    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rs]  # noqa: E731
    assert strip(ra) == strip(rb)


def test_resume_of_a_folder_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ResnetlabError, match="not a run folder"):
        resume(str(tmp_path), progress=False)


def test_train_eval_sample_is_the_error_on_fixed_unaugmented_training_images(tmp_path, data_dir):
    from resnetlab.data.splits import ImageSet
    from resnetlab.train.evaluate import evaluate_run
    from resnetlab.train.loop import train_eval_sample

    # The sample is fixed: the same images whatever the run's seed, a sorted subset, no repeats.
    images = ImageSet(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), torch.arange(100),
                      [str(i) for i in range(100)])
    a, b = train_eval_sample(images, 30), train_eval_sample(images, 30)
    assert a.labels.tolist() == b.labels.tolist() == sorted(set(a.labels.tolist())) and len(a) == 30
    assert train_eval_sample(images, 500) is images
    with pytest.raises(ResnetlabError, match="--train-eval-sample"):
        train_eval_sample(images, -1)

    # All the training images (the sample is larger than the set): the last evaluation's training
    # error is exactly what `resnetlab eval --split train` measures on the finished run, without
    # augmentation, in fp32.
    cfg = config(tmp_path / "run", data_dir, recipe="paper-cifar", iterations=8, batch_size=32,
                 eval_every=0.5)
    cfg.train_eval_sample = 10000
    summary = train(cfg, progress=False)
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open() if '"eval"' in line]
    assert len(evals) == 2 and all("train_sample_top1_error" in r for r in evals)
    assert summary["train_sample_top1_error"] == evals[-1]["train_sample_top1_error"]
    r = evaluate_run(tmp_path / "run", split="train", data_dir=data_dir)
    assert r["top1_error"] == pytest.approx(summary["train_sample_top1_error"], abs=1e-9)
    assert evals[-1]["train_sample_loss"] == pytest.approx(r["loss"], rel=1e-5)


def _groups_by_name(model, groups):
    names = {id(p): n for n, p in model.named_parameters()}
    return [({names[id(p)] for p in g["params"]}, g["lr_mult"], g["weight_decay"]) for g in groups]


def test_param_groups_without_bn_weight_decay_are_the_two_they_always_were():
    from resnetlab import create_model
    from resnetlab.train.loop import _param_groups

    model = create_model("resnet8", num_classes=4, in_channels=1)
    groups = _groups_by_name(model, _param_groups(model, 0.5, 1e-4))
    everything, head = {n for n, _ in model.named_parameters()}, {"fc.weight", "fc.bias"}
    assert groups == [(everything - head, 0.5, 1e-4), (head, 1.0, 1e-4)]


def test_bn_weight_decay_applies_to_batchnorm_weights_and_biases_only():
    from resnetlab import create_model
    from resnetlab.train.loop import _param_groups

    model = create_model("resnet8", num_classes=4, in_channels=1)
    model.layer1.requires_grad_(False)          # frozen parameters are in no group
    groups = _param_groups(model, 0.1, 5e-4, bn_weight_decay=0.0)
    named = _groups_by_name(model, groups)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    flat = {n for n, p in trainable.items() if p.ndim <= 1}
    assert named == [(set(trainable) - flat - {"fc.weight"}, 0.1, 5e-4),
                     (flat - {"fc.bias"}, 0.1, 0.0),
                     ({"fc.weight"}, 1.0, 5e-4),
                     ({"fc.bias"}, 1.0, 0.0)]
    assert "bn1.weight" in flat and "bn1.bias" in flat and "conv1.weight" not in flat
    assert not any(n.startswith("layer1.") for g in named for n in g[0])
    # the optimiser takes each group's decay: a zero-gradient step shrinks only the decayed weights
    opt = torch.optim.SGD(groups, lr=1.0, weight_decay=123.0)
    for g in opt.param_groups:   # as _train_step sets them, at a schedule lr of 1
        g["lr"] = g["lr_mult"]
    before = {n: p.detach().clone() for n, p in trainable.items()}
    for p in trainable.values():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model.bn1.weight, before["bn1.weight"])
    assert torch.equal(model.fc.bias, before["fc.bias"])
    assert torch.allclose(model.conv1.weight, before["conv1.weight"] * (1 - 0.1 * 5e-4))
    assert torch.allclose(model.fc.weight, before["fc.weight"] * (1 - 5e-4))


def test_a_run_saved_before_the_new_recipe_fields_is_the_same_set_up():
    from resnetlab.train.loop import _same_recipe

    mine = get_recipe("fast").to_dict()
    old = {k: v for k, v in mine.items() if k not in ("ema", "bn_weight_decay")}
    assert _same_recipe(old, mine) and _same_recipe(mine, old)
    assert not _same_recipe(old, {**mine, "ema": 0.99})
    assert not _same_recipe(old, {**mine, "bn_weight_decay": 0.0})

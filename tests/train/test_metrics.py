"""resnetlab.train.metrics: metrics.jsonl (the source of truth) and its TensorBoard mirror."""

import sys

import pytest
from fakedata import write_fashion_like

from resnetlab import ResnetlabError
from resnetlab.train.loop import TrainConfig, resume, train
from resnetlab.train.metrics import read_metrics, tensorboard_writer
from resnetlab.train.recipe import get_recipe

FIXED = dict(precision="fp32", channels_last="off", compile="off")


@pytest.fixture
def data_dir(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=128, n_test=32, size=12)
    return str(tmp_path / "data")


def config(out, data_dir, tensorboard="auto", **recipe):
    return TrainConfig(model="resnet8", data="fashion-mnist", data_dir=data_dir, out=str(out),
                       recipe=get_recipe("fast", **{**FIXED, "epochs": 2, "batch_size": 32, **recipe}),
                       tensorboard=tensorboard)


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def without_tensorboard(monkeypatch):
    # As where the package is missing: importing torch.utils.tensorboard raises ImportError.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


def test_event_files_hold_what_metrics_jsonl_holds(tmp_path, data_dir):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    train(config(out, data_dir, tensorboard="on"), progress=False)
    assert list(out.glob("events.out.tfevents.*")), "no event file in the run folder"
    got = scalars(out)
    records = read_metrics(out / "metrics.jsonl")
    for kind, key in (("train", "train_loss"), ("train", "lr"), ("train", "images_per_s"),
                      ("eval", "test_top1_error")):
        want = [(r["step"], r[key]) for r in records if r["kind"] == kind]
        assert [s for s, _ in got[f"{kind}/{key}"]] == [s for s, _ in want], key
        assert [v for _, v in got[f"{kind}/{key}"]] == pytest.approx([v for _, v in want], rel=1e-6), key


def test_a_resumed_run_does_not_log_the_redone_steps_twice(tmp_path, data_dir):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    train(config(out, data_dir, tensorboard="on"), progress=False)
    # Pretend the run died after its first epoch: drop what came after that checkpoint, resume.
    import shutil

    from resnetlab.train.checkpoint import list_checkpoints

    first, *later = list_checkpoints(out)
    for c in later:
        shutil.rmtree(c.path)
    (out / "summary.json").unlink()
    (out / "model.safetensors").unlink()
    resume(out, progress=False)
    steps = [s for s, _ in scalars(out)["train/train_loss"]]
    assert steps == sorted(set(steps)), steps
    assert steps == [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_without_the_package_auto_trains_as_before(tmp_path, data_dir, monkeypatch):
    without_tensorboard(monkeypatch)
    out = tmp_path / "run"
    summary = train(config(out, data_dir), progress=False)
    assert summary["steps"] == 8 and not list(out.glob("events.out.tfevents.*"))
    with pytest.raises(ResnetlabError, match=r"pip install 'resnetlab\[tensorboard\]'"):
        tensorboard_writer(tmp_path, "on")


def test_off_writes_no_event_files(tmp_path, data_dir):
    out = tmp_path / "run"
    train(config(out, data_dir, tensorboard="off"), progress=False)
    assert not list(out.glob("events.out.tfevents.*"))
    with pytest.raises(ResnetlabError, match="--tensorboard must be one of auto, on, off"):
        tensorboard_writer(tmp_path, "sometimes")

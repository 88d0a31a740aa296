import json
import math

import pytest
import torch
from fakedata import write_fashion_like

from resnetlab import ResnetlabError, create_model
from resnetlab.cli import main
from resnetlab.experiments import ExperimentSpec, degradation, depth, responses, shortcuts
from resnetlab.experiments.responses import ResponseStats, response_layers

FIXED = dict(precision="fp32", channels_last="off", compile="off")


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=16)
    return ExperimentSpec(data="fashion-mnist", data_dir=str(tmp_path / "data"), out=tmp_path / "out",
                          iterations=12, engine=FIXED, progress=False)


def png(path):
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_degradation_end_to_end(spec):
    r = degradation.run(spec, depths=[8, 14])
    assert png(spec.out / "degradation.png") and (spec.out / "degradation.md").is_file()
    saved = json.loads((spec.out / "results.json").read_text())["degradation"]
    assert saved["depths"] == [8, 14] and saved["figures"] == ["degradation.png"]
    assert set(saved["models"]) == {"plain8", "plain14", "resnet8", "resnet14"}
    for name, m in saved["models"].items():
        assert {"depth", "params", "seeds", "final_train_error", "final_running_train_error",
                "final_test_error", "best_test_error", "steps", "run_dirs"} <= set(m)
        assert m["seeds"] == [0] and m["run_dirs"] == [str(spec.out / "runs" / name / "seed-0")]
        assert 0 <= m["final_test_error"]["mean"] <= 1 and m["steps"] == 12
        assert m["train_error_kind"] == "un-augmented training sample"   # the whole 256 images here
    assert saved["models"]["plain14"]["params"] == saved["models"]["resnet14"]["params"]
    assert saved["recipe"]["name"] == "paper-cifar-warmup" and saved["recipe"]["batch_size"] == 128
    assert saved["recipe"]["warmup"] == 0.1 and saved["recipe"]["milestones"] == [0.5, 0.75]
    assert saved["seeds"] == [0]
    # One seed: no interval, so nothing is resolved either way.
    assert r["verdicts"][0].startswith("plain nets, training error: not resolved at this budget")
    assert all("one seed each" in v for v in r["verdicts"] if "vs" in v and "along the run" not in v)
    md = (spec.out / "degradation.md").read_text()
    assert "| 14 |" in md and "different data set" in md and "one seed (0)" in md


def _run(name, train_error, test_error=0.5, sample=None, seed=0):
    from resnetlab.experiments.common import RunCurves
    steps = [10 * (i + 1) for i in range(len(train_error))]
    return RunCurves(name, None, steps, train_error, steps[-1:], [test_error], 0, {}, seed,
                     [sample] if sample is not None else [])


def _seeds(name, *runs):
    from resnetlab.experiments.common import Seeds
    return Seeds(name, list(runs))


def test_gap_along_run_counts_where_the_deeper_net_is_worse():
    shallow = _seeds("plain8", _run("plain8", [0.9, 0.6, 0.5, 0.4, 0.3]))
    deep = _seeds("plain14", _run("plain14", [0.8, 0.7, 0.4, 0.5, 0.4]))
    assert degradation.gap_along_run(deep, shallow) == (3, 5, 40)   # above at 20, 40, 50; since 40
    assert degradation.gap_along_run(shallow, deep) == (2, 5, None)  # not above at the last step
    curves = {"plain8": shallow, "plain14": deep, "resnet8": shallow, "resnet14": shallow}
    lines = degradation.verdicts(curves, [8, 14])
    assert "at 3 of 5 logged steps (continuously from step 40 to the end)" in lines[1]


def test_gap_along_run_uses_the_mean_over_seeds():
    # Seed 0 has the deep net above everywhere, seed 1 below by more: the mean is below.
    deep = _seeds("plain14", _run("plain14", [0.6, 0.6], seed=0), _run("plain14", [0.2, 0.2], seed=1))
    shallow = _seeds("plain8", _run("plain8", [0.5, 0.5], seed=0), _run("plain8", [0.5, 0.5], seed=1))
    assert degradation.gap_along_run(deep, shallow) == (0, 2, None)


def test_degradation_verdicts_resolve_only_what_the_seeds_resolve():
    def net(name, sample_errors):
        return _seeds(name, *[_run(name, [0.5], sample=e, seed=i) for i, e in enumerate(sample_errors)])
    curves = {
        # plain: the deep net is 10 points worse on every seed -> resolved, degradation
        "plain20": net("plain20", [0.10, 0.12, 0.11]), "plain56": net("plain56", [0.20, 0.22, 0.21]),
        # resnet: seeds disagree (+3, -2, +1 points) -> the interval contains 0
        "resnet20": net("resnet20", [0.10, 0.12, 0.11]), "resnet56": net("resnet56", [0.13, 0.10, 0.12]),
    }
    lines = degradation.verdicts(curves, [20, 56])
    plain = next(v for v in lines if v.startswith("plain nets, training error"))
    assert "plain-20 has the lower training error" in plain and plain.endswith("degradation present")
    assert "+10.00 points" in plain and "3 of 3 seeds have plain-56 lower" not in plain
    res = next(v for v in lines if v.startswith("ResNets, training error"))
    assert "not resolved at this budget" in res and "1 of 3 seeds have ResNet-56 lower" in res
    assert "the deeper ResNet" not in res     # no conclusion drawn from an unresolved comparison


def test_degradation_states_each_step_in_depth_when_there_are_depths_between():
    def net(name, sample_errors):
        return _seeds(name, *[_run(name, [0.5], sample=e, seed=i) for i, e in enumerate(sample_errors)])
    errors = {20: [0.10, 0.12, 0.11], 32: [0.15, 0.17, 0.16], 56: [0.16, 0.16, 0.18]}
    curves = {f"{k}{d}": net(f"{k}{d}", e) for d, e in errors.items() for k in ("plain", "resnet")}
    lines = degradation.verdicts(curves, [20, 32, 56])
    step = next(v for v in lines if v.startswith("plain nets, 20 -> 32 layers, training error"))
    assert "+5.00 points" in step and "not resolved" not in step      # +5 on every seed
    step = next(v for v in lines if v.startswith("ResNets, 32 -> 56 layers, training error"))
    assert "not resolved at this budget" in step                      # +1, -1, +2: spans 0
    assert not any("->" in v for v in degradation.verdicts(curves, [20, 56]))   # two depths: ends only


def test_seeds_train_one_folder_each_and_results_keep_every_value(spec):
    spec.seeds = (0, 1)
    r = degradation.run(spec, depths=[8, 14])
    saved = json.loads((spec.out / "results.json").read_text())["degradation"]
    assert saved["seeds"] == [0, 1]
    for name, m in saved["models"].items():
        assert m["seeds"] == [0, 1]
        for s in (0, 1):
            run = spec.out / "runs" / name / f"seed-{s}"
            assert (run / "summary.json").is_file()
            assert json.loads((run / "config.json").read_text())["config"]["seed"] == s
        values = m["final_test_error"]["values"]
        assert len(values) == 2 and m["final_test_error"]["mean"] == pytest.approx(sum(values) / 2)
        assert m["final_test_error"]["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    # The seeds differ in initialisation and data order.
    first = [json.loads(line) for line in (spec.out / "runs/resnet8/seed-0/metrics.jsonl").open()]
    second = [json.loads(line) for line in (spec.out / "runs/resnet8/seed-1/metrics.jsonl").open()]
    assert first[0]["train_loss"] != second[0]["train_loss"]
    # Every difference has its interval, and a verdict says "not resolved" exactly when it holds 0.
    for kind in ("plain", "resnet"):
        d = saved["differences"][f"{kind}14-{kind}8"]["training error"]
        assert d["method"] == "paired t" and d["low"] <= d["diff"] <= d["high"]
        line = next(v for v in r["verdicts"] if v.startswith(("plain nets" if kind == "plain" else "ResNets")
                                                               + ", training error"))
        assert ("not resolved at this budget" in line) == (d["low"] <= 0 <= d["high"])
    assert "mean ± std over 2 seeds (0, 1" in (spec.out / "degradation.md").read_text()


def test_experiments_share_runs_and_refuse_a_different_budget(spec, monkeypatch):
    degradation.run(spec, depths=[8, 14])
    import resnetlab.train.loop as loop

    def no_training(*a, **k):
        raise AssertionError("should have reused the degradation runs")

    monkeypatch.setattr(loop, "train", no_training)   # what finish_run calls to train or resume
    depth.run(spec, depths=[8, 14])
    results = json.loads((spec.out / "results.json").read_text())
    assert set(results) == {"degradation", "depth"}
    assert results["depth"]["figures"] == ["depth.png"] and png(spec.out / "depth.png")
    params = [results[e]["models"]["resnet14"]["params"] for e in ("depth", "degradation")]
    assert params[0] == params[1]
    other = ExperimentSpec(**{**spec.__dict__, "iterations": 24})
    with pytest.raises(ResnetlabError, match="different set-up"):
        depth.run(other, depths=[8])


def test_responses_end_to_end(spec):
    spec.seeds = (0, 1)
    r = responses.run(spec, depths=[8, 14])
    assert png(spec.out / "responses.png")
    lengths = {k: len(v) for k, v in r["std"].items()}
    assert lengths == {"plain8": 7, "plain14": 13, "resnet8": 7, "resnet14": 13}   # 6n+1 3x3 layers
    assert all(s > 0 and math.isfinite(s) for v in r["std"].values() for s in v)
    for k, runs in r["std_per_seed"].items():   # the figure's curve is the mean over seeds
        assert len(runs) == 2
        assert r["std"][k] == pytest.approx([(a + b) / 2 for a, b in zip(*runs, strict=True)])
        assert r["mean_std"][k]["n"] == 2
    assert len(r["verdicts"]) == 3 and all("mean response std" in v for v in r["verdicts"])


def test_shortcuts_end_to_end(spec):
    r = shortcuts.run(spec, depth=8)
    m = r["models"]
    assert m["A"]["params"] == m["plain"]["params"] < m["B"]["params"] < m["C"]["params"]
    assert set(r["differences"]) == {"B-A", "C-B", "C-A", "A-plain", "B-plain", "C-plain"}
    assert r["verdicts"][0].startswith("not resolved at this budget: option B")   # one seed
    assert "the paper finds C < B < A" in r["verdicts"][-1]
    # Option A is the degradation experiment's resnet: the same folder.
    assert m["A"]["run_dirs"] == [str(spec.out / "runs" / "resnet8" / "seed-0")]


def test_reproduce_command(spec, capsys):
    assert main(["reproduce", "degradation", "--data", "fashion-mnist", "--data-dir", spec.data_dir,
                 "--depths", "8", "14", "--iterations", "12", "--out", str(spec.out), "--precision", "fp32",
                 "--channels-last", "off", "--compile", "off", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "degradation on fashion-mnist" in out and "figure:" in out and "plain-14" in out


def test_response_layers_are_the_bn_after_each_3x3_conv():
    names = [n for n, _ in response_layers(create_model("resnet20"))]
    assert len(names) == 19 and names[:3] == ["bn1", "layer1.0.bn1", "layer1.0.bn2"]
    assert names[-1] == "layer3.2.bn2"
    assert len(response_layers(create_model("resnet50"))) == 16   # the 3x3 of each bottleneck; stem is 7x7


def test_response_std_matches_a_hand_computed_std():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=3).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.2, 2.0)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.randn(6, 3, 16, 16)
    stats = ResponseStats(model)
    with torch.no_grad():
        model(x[:4])
        model(x[4:])   # accumulates over batches like the test set
    got = stats.std()
    stats.remove()
    # By hand: run the layers one by one and take the std of each BN output over all values.
    with torch.no_grad():
        expect = []
        h = model.bn1(model.conv1(x))
        expect.append(h.double().std(unbiased=False).item())
        h = model.relu(h)
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                a = block.bn1(block.conv1(h))
                expect.append(a.double().std(unbiased=False).item())
                b = block.bn2(block.conv2(block.relu(a)))
                expect.append(b.double().std(unbiased=False).item())
                h = block.relu(b + (h if block.downsample is None else block.downsample(h)))
    assert got == pytest.approx(expect, rel=1e-6)
    assert len(model.bn1._forward_hooks) == 0


def test_transfer_end_to_end(tmp_path, monkeypatch):
    from resnetlab.experiments import transfer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_fashion_like(tmp_path / "data", n_train=400, n_test=100, size=12, classes=10)
    spec = ExperimentSpec(data="fashion-mnist", data_dir=str(tmp_path / "data"), out=tmp_path / "out",
                          recipe="fast", epochs=1, iterations=None, engine=FIXED, progress=False)
    r = transfer.run(spec, model="resnet8", sizes=(4, 8), iterations=10)
    assert set(r["accuracy"]) == {4, 8}
    assert set(r["models"]) == {f"{m}-{n}" for m in transfer.MODES for n in (4, 8)}
    assert r["models"]["frozen-4"]["batch_size"] == 10
    assert len(r["verdicts"]) == 2 and "per class" in r["verdicts"][0]
    evals = [line for line in (spec.out / "runs/scratch-4/seed-0/metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert len(evals) == 5
    md = (spec.out / "transfer.md").read_text()
    assert "| 8 |" in md and "frozen backbone" in md


def test_zoo_end_to_end(spec):
    from resnetlab.experiments import zoo

    r = zoo.run(spec, models=("lenet5", "resnet8"), seconds=2)
    m = r["models"]
    assert set(m) == {"lenet5", "resnet8"}
    assert m["lenet5"]["params"] == 61_706   # LeNet-5 at 10 classes, 1 channel
    for row in m.values():
        assert row["iterations"] >= 20 and row["mult_adds"] > 0 and 0 <= row["test_accuracy"]["mean"] <= 1
        assert row["images_per_s"] > 0
    md = (spec.out / "zoo.md").read_text()
    assert "| lenet5 |" in md and "s of training" in md
    # A rerun reuses the runs with the length they were given.
    again = zoo.run(spec, models=("lenet5", "resnet8"), seconds=50)
    assert again["models"]["resnet8"]["iterations"] == m["resnet8"]["iterations"]


def test_zoo_trains_a_diverging_model_again_at_a_tenth_of_the_lr(spec, monkeypatch):
    from resnetlab.experiments import zoo
    from resnetlab.train.loop import Diverged

    real = zoo.train_or_reuse
    calls = []

    def diverge_at_full_lr(spec, model, data=None, recipe=None, name=None, seed=0):
        calls.append((name or model, recipe.lr))
        if name is None and model == "lenet5":
            (spec.out / "runs" / model / f"seed-{seed}").mkdir(parents=True, exist_ok=True)
            raise Diverged("training diverged: loss became nan at step 3")
        return real(spec, model, data=data, recipe=recipe, name=name, seed=seed)

    monkeypatch.setattr(zoo, "train_or_reuse", diverge_at_full_lr)
    r = zoo.run(spec, models=("lenet5", "resnet8"), seconds=2)
    lr = spec.recipe_for().lr
    assert calls == [("lenet5", lr), (f"lenet5-lr{lr / 10:g}", lr / 10), ("resnet8", lr)]
    assert r["models"]["lenet5"]["lr"] == pytest.approx(lr / 10) and r["models"]["resnet8"]["lr"] == lr
    assert f"| {lr / 10:g} |" in (spec.out / "zoo.md").read_text()
    calls.clear()   # a rerun goes straight to the lower-lr run
    zoo.run(spec, models=("lenet5",), seconds=2)
    assert calls == [(f"lenet5-lr{lr / 10:g}", lr / 10)]


def test_cifar10_is_recognised_by_name_or_by_its_classes():
    from resnetlab.data.splits import DataSplits
    from resnetlab.experiments.common import CIFAR10_CLASSES, is_cifar10
    folder = DataSplits("/data/cifar10-jpeg.tar.gz", None, None, list(CIFAR10_CLASSES), "folder")
    assert is_cifar10(folder) and is_cifar10(DataSplits("cifar10", None, None, [], "batches"))
    assert not is_cifar10(DataSplits("fashion-mnist", None, None, ["T-shirt/top"] * 10, "idx"))


def test_titles_name_a_data_path_by_its_last_part(tmp_path):
    assert ExperimentSpec(data="/data/cifar10-jpeg.tar.gz", out=tmp_path).data_label == "cifar10-jpeg.tar.gz"
    assert ExperimentSpec(data="fashion-mnist", out=tmp_path).data_label == "fashion-mnist"


def test_jobs_train_the_seeds_side_by_side_with_a_share_of_the_threads(spec, monkeypatch):
    import resnetlab.train.loop as loop
    from resnetlab.experiments.common import train_seeds

    spec.seeds, spec.jobs = (0, 1, 2), 2
    threads = torch.get_num_threads()
    runs = train_seeds(spec, "resnet8")
    assert runs.seeds == [0, 1, 2]
    # Seeds 0 and 1 side by side on half the threads each; seed 2, left over, alone on all of them.
    for s, used in ((0, max(1, threads // 2)), (1, max(1, threads // 2)), (2, threads)):
        saved = json.loads((spec.out / "runs" / "resnet8" / f"seed-{s}" / "config.json").read_text())
        assert saved["config"]["seed"] == s and saved["engine"]["threads"] == used
    assert torch.get_num_threads() == threads   # this process keeps its own
    # Asked again, one at a time, the finished runs are reused, not trained again.
    monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("should have reused the runs"))
    spec.jobs = 1
    assert train_seeds(spec, "resnet8").values("final_test_error") == runs.values("final_test_error")

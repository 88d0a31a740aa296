import json

import pytest

from resnetlab import ResnetlabError
from resnetlab.train.recipe import RECIPES, Recipe, Schedule, get_recipe, recipe_from_dict


def test_paper_cifar_is_the_paper():
    r = RECIPES["paper-cifar"]
    assert (r.batch_size, r.lr, r.momentum, r.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert r.iterations == 64000 and r.augment == "pad-crop-flip" and r.pad == 4
    assert r.normalize == "pixel-mean" and r.warmup_lr == 0.01 and r.warmup_min_depth == 110
    s = Schedule(r, r.total_steps(390))
    assert [s.lr(i) for i in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_step_milestones_scale_with_a_short_run():
    r = get_recipe("paper-cifar", iterations=64)
    s = Schedule(r, r.total_steps(10))
    lrs = [s.lr(i) for i in range(64)]
    changes = [i for i in range(1, 64) if lrs[i] != lrs[i - 1]]
    assert changes == [32, 48]


def test_epochs_override_clears_iterations_and_back():
    r = get_recipe("paper-cifar", epochs=2)
    assert r.iterations is None and r.total_steps(390) == 780
    r = get_recipe("fast", iterations=100)
    assert r.epochs is None and r.total_steps(7) == 100


def test_paper_warmup_until_training_error_falls_below_80_percent():
    r = RECIPES["paper-cifar"]
    s = Schedule(r, 64000, state={"warm": True})
    assert s.lr(0) == 0.01
    s.after_train_error(0.85)
    assert s.lr(10) == 0.01
    s.after_train_error(0.79)
    assert s.lr(11) == 0.1


def test_onecycle_rises_then_falls_to_final_lr():
    r = get_recipe("fast", iterations=100, warmup=0.2)
    s = Schedule(r, 100)
    lrs = [s.lr(i) for i in range(100)]
    assert max(lrs) == pytest.approx(r.lr, rel=1e-6)
    assert lrs.index(max(lrs)) in (19, 20) and lrs[-1] < 0.02 * r.lr
    assert all(a <= b for a, b in zip(lrs[:19], lrs[1:20], strict=True))


def test_paper_cifar_warmup_is_the_paper_recipe_plus_a_warmup_and_nothing_else():
    paper, short = RECIPES["paper-cifar"].to_dict(), RECIPES["paper-cifar-warmup"].to_dict()
    differ = {k for k in paper if paper[k] != short[k]}
    assert differ == {"name", "warmup", "notes"} and short["warmup"] == 0.1


def test_step_schedule_with_warmup_ramps_linearly_then_keeps_the_papers_steps():
    r = get_recipe("paper-cifar", iterations=100, warmup=0.1)
    s = Schedule(r, 100)
    assert [s.lr(i) for i in range(10)] == pytest.approx([0.01 * (i + 1) for i in range(10)])
    assert s.lr(10) == s.lr(49) == pytest.approx(0.1)
    assert s.lr(50) == pytest.approx(0.01) and s.lr(75) == pytest.approx(0.001)
    # Without warm-up the paper's schedule is untouched: 0.1 from step 0.
    assert Schedule(get_recipe("paper-cifar", iterations=100), 100).lr(0) == pytest.approx(0.1)


def test_plateau_divides_after_patience_evaluations():
    r = get_recipe("paper-imagenet", patience=2)
    s = Schedule(r, 1000)
    for err in (0.5, 0.4, 0.41, 0.42):
        s.after_eval(err)
    assert s.lr(0) == pytest.approx(0.01)


@pytest.mark.parametrize("bad", [dict(lr=-1), dict(batch_size=0), dict(schedule="linearish"),
                                 dict(milestones=[0.5, 1.5]), dict(precision="int8"), dict(epochs=0)])
def test_bad_values_are_clear_errors(bad):
    with pytest.raises(ResnetlabError):
        get_recipe("fast", **bad)


def test_unknown_recipe_and_roundtrip():
    with pytest.raises(ResnetlabError, match="unknown recipe"):
        get_recipe("papr-cifar")
    r = get_recipe("paper-cifar", epochs=3)
    assert recipe_from_dict(r.to_dict()) == r


def test_fast_training_options_are_off_in_every_named_recipe():
    for r in RECIPES.values():
        assert r.ema == 0.0 and r.bn_weight_decay is None and r.eval_view != "flip"


def test_a_recipe_saved_before_the_fast_training_options_loads_with_them_off():
    from pathlib import Path

    fixture = Path(__file__).parent.parent / "fixtures" / "run-62bb55d" / "config.json"
    saved = json.loads(fixture.read_text())["config"]["recipe"]
    assert not {"ema", "bn_weight_decay"} & set(saved)
    r = recipe_from_dict(saved)
    assert r.ema == 0.0 and r.bn_weight_decay is None and r.eval_view == "none" and r.lr == 0.2


@pytest.mark.parametrize("bad,flag", [(dict(ema=1.0), "--ema"), (dict(ema=-0.1), "--ema"),
                                      (dict(bn_weight_decay=-1e-4), "--bn-weight-decay"),
                                      (dict(eval_view="mirror"), "--eval-view")])
def test_bad_fast_training_options_are_clear_errors(bad, flag):
    with pytest.raises(ResnetlabError, match=flag):
        get_recipe("fast", **bad)


def test_fast_training_options_are_flags():
    import argparse

    from resnetlab.cli.flags import add_recipe_flags, recipe_overrides

    p = argparse.ArgumentParser()
    add_recipe_flags(p)
    args = p.parse_args(["--ema", "0.99", "--bn-weight-decay", "0", "--eval-view", "flip"])
    r = get_recipe("fast", **recipe_overrides(args))
    assert (r.ema, r.bn_weight_decay, r.eval_view) == (0.99, 0.0, "flip")
    assert "flip" in Recipe.__dataclass_fields__["eval_view"].metadata["help"]
    assert recipe_from_dict(json.loads(json.dumps(r.to_dict()))) == r

"""The linear classifier behind `show templates`, and its template figure."""

import pytest
import torch
from fakedata import class_images, write_fashion_like
from pngcheck import check_png

from resnetlab import ResnetlabError
from resnetlab.viz import fit_templates, plot_templates, show_templates, train_linear
from resnetlab.viz.common import png_bytes


def _images(n, channels, seed, classes=4, size=10):
    images, labels = class_images(n, size=size, channels=channels, classes=classes, seed=seed)
    return torch.from_numpy(images), torch.from_numpy(labels).long()


@pytest.mark.parametrize("channels", [1, 3])
def test_linear_classifier_learns_the_tiny_classes(channels):
    x, y = _images(400, channels, seed=0)
    tx, ty = _images(100, channels, seed=1)
    clf = train_linear(x, y, list("abcd"), tx, ty, epochs=10, batch_size=50)
    assert clf.weight.shape == (4, channels, 10, 10) and clf.bias.shape == (4,)
    assert clf.mean.shape == (channels, 10, 10)
    assert clf.test_accuracy > 0.6 and clf.train_accuracy > 0.6   # chance is 0.25
    assert clf.accuracy(tx, ty) == clf.test_accuracy


def test_linear_classifier_is_deterministic_per_seed():
    x, y = _images(200, 1, seed=0)
    a = train_linear(x, y, list("abcd"), epochs=2, batch_size=50, seed=3, min_steps=0)
    b = train_linear(x, y, list("abcd"), epochs=2, batch_size=50, seed=3, min_steps=0)
    assert torch.equal(a.weight, b.weight) and a.test_accuracy is None


def test_bad_epochs_is_a_user_error():
    x, y = _images(20, 1, seed=0)
    with pytest.raises(ResnetlabError, match="--epochs"):
        train_linear(x, y, list("abcd"), epochs=0)


@pytest.mark.parametrize("shape,classes", [((10, 1, 28, 28), 10), ((10, 3, 32, 32), 10),
                                           ((100, 3, 8, 8), 100), ((4, 2, 6, 6), 4)])
def test_plot_templates_grays_rgb_and_many_classes(shape, classes):
    names = [f"class {i}" for i in range(classes)]
    check_png(png_bytes(plot_templates, torch.randn(shape), names, title="t"))
    with pytest.raises(ValueError):
        plot_templates(torch.randn(shape), names[:-1], "x.png")


def test_show_templates_on_fashion_format_files(tmp_path, monkeypatch):
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    monkeypatch.chdir(tmp_path)
    out = show_templates("fashion-mnist", data_dir=str(tmp_path / "data"), epochs=3)
    assert str(out) == "templates-fashion-mnist.png"
    check_png(tmp_path / out)


def test_fit_templates_keeps_the_image_shape_and_class_names(tmp_path):
    write_fashion_like(tmp_path / "data", n_train=256, n_test=64, size=12)
    clf = fit_templates("fashion-mnist", data_dir=str(tmp_path / "data"), epochs=3)
    assert clf.weight.shape == (10, 1, 12, 12)   # Fashion-MNIST's 10 class names, 4 of them used
    assert clf.classes[-1] == "Ankle boot"
    assert clf.test_accuracy > 0.5   # chance is 0.25


def test_small_sets_still_get_enough_steps():
    x, y = _images(64, 1, seed=0)
    clf = train_linear(x, y, list("abcd"), x, y, epochs=1, batch_size=64)   # 1 epoch = 1 step
    assert clf.test_accuracy > 0.9

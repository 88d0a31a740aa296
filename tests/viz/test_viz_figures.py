"""The figures of a trained run: filters, feature maps, curves, confusion matrix (Python API)."""

import io
import json
import shutil

import pytest
import torch
from fakedata import write_image
from pngcheck import check_png

from resnetlab import ResnetlabError, create_model
from resnetlab.data.augment import Normalizer
from resnetlab.viz import (
    feature_maps,
    first_conv,
    plot_confusion,
    plot_features,
    plot_filters,
    plot_run_curves,
    prepare_image,
    show_confusion,
    show_curves,
    show_features,
    show_filters,
    stage_modules,
)
from resnetlab.viz.common import mosaic, png_bytes, unit_range

# ---- pieces -----------------------------------------------------------------------------------------


def test_unit_range_scales_each_block_and_keeps_constant_blocks_finite():
    t = torch.tensor([[[[1.0, 3.0]]], [[[-2.0, -2.0]]]])
    out = unit_range(t, dims=(1, 2, 3))
    assert out[0].flatten().tolist() == [0.0, 1.0]
    assert out[1].flatten().tolist() == [0.5, 0.5]
    assert unit_range(t[1], constant=0.0).flatten().tolist() == [0.0, 0.0]


def test_mosaic_places_tiles_row_by_row_with_gaps():
    tiles = torch.stack([torch.full((1, 2, 2), v) for v in (0.1, 0.2, 0.3)])
    grid = mosaic(tiles, cols=2, pad=1, fill=1.0)
    assert grid.shape == (1, 7, 7)
    assert grid[0, 1, 1] == pytest.approx(0.1) and grid[0, 1, 4] == pytest.approx(0.2)
    assert grid[0, 4, 1] == pytest.approx(0.3) and grid[0, 4, 4] == 1.0   # the empty slot is gap


def test_first_conv_of_each_family():
    assert first_conv(create_model("resnet8", num_classes=10, in_channels=1))[0] == "conv1"
    assert first_conv(create_model("lenet5", num_classes=10, in_channels=1))[0] == "features.0"
    assert first_conv(create_model("googlenet_small", num_classes=10))[0] == "conv1.conv"


@pytest.mark.parametrize("name,channels,size,expected", [
    ("resnet8", 1, 12, ["stem", "layer1", "layer2", "layer3"]),
    ("resnet18", 3, 64, ["layer1", "layer2", "layer3", "layer4"]),
    ("lenet5", 1, 32, ["features.2 (AvgPool2d)", "features.5 (AvgPool2d)"]),
    ("vgg11_small", 3, 32, ["features.2 (MaxPool2d)", "features.5 (MaxPool2d)", "features.10 (MaxPool2d)",
                            "features.15 (MaxPool2d)"]),   # the last pool's output is 1x1: left out
    ("googlenet_small", 3, 32, None),
])
def test_stages_of_each_family_give_feature_maps(name, channels, size, expected):
    model = create_model(name, num_classes=10, in_channels=channels).eval()
    maps, logits = feature_maps(model, torch.randn(1, channels, size, size))
    labels = [label for label, _ in maps]
    assert logits.shape == (1, 10)
    if expected is not None:
        assert labels == expected
    else:
        assert len(labels) >= 3 and all("aux" not in label for label in labels)
    assert all(m.ndim == 3 and m.shape[1] * m.shape[2] > 1 for _, m in maps)
    assert len(stage_modules(model)) >= len(maps)


def test_plots_draw_into_files_and_bytes(tmp_path):
    out = plot_filters(torch.randn(16, 3, 7, 7), tmp_path / "deep" / "f.png", "conv1", "t")
    assert out == tmp_path / "deep" / "f.png"
    check_png(out)
    check_png(png_bytes(plot_filters, torch.randn(6, 1, 5, 5)))
    check_png(png_bytes(plot_filters, torch.randn(8, 5, 3, 3)))   # 5 channels: their mean, gray
    buffer = io.BytesIO()
    assert plot_confusion([[3, 1], [0, 4]], ["a", "b"], buffer) is buffer
    check_png(buffer.getvalue())
    maps = [("stem", torch.rand(4, 8, 8)), ("layer1", torch.zeros(2, 4, 4))]
    check_png(png_bytes(plot_features, torch.rand(3, 8, 8), maps, channels=3))


def test_prepare_image_matches_the_runs_channels_size_and_view(tmp_path):
    """Any mode and size becomes the run's C x H x W; a centre-crop eval view cuts the stored size."""
    from resnetlab.data.decode import decode_image
    from resnetlab.predict import TrainedRun

    def run(stored, view, crop, mean, std):
        return TrainedRun(model=None, classes=[], stored_size=stored, input_size=stored, view=view, crop=crop,
                          normalizer=Normalizer(mean, std), run_dir=tmp_path, source=tmp_path, record=None)

    rgb = run((3, 16, 16), "center", 12, torch.full((3, 1, 1), 0.5), torch.full((3, 1, 1), 0.25))
    for mode in ("L", "RGB", "RGBA", "P"):
        path = write_image(tmp_path / f"{mode}.png", mode=mode, size=(23, 9))
        shown, x = prepare_image(rgb, decode_image(path.read_bytes()))
        assert shown.shape == (3, 12, 12) and 0 <= shown.min() and shown.max() <= 1
        assert x.shape == (1, 3, 12, 12)
        assert torch.allclose(x[0], (shown - 0.5) / 0.25, atol=1e-5)
    gray = run((1, 10, 10), "none", None, torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    shown, x = prepare_image(gray, decode_image((tmp_path / "RGBA.png").read_bytes()))
    assert shown.shape == (1, 10, 10) and x.shape == (1, 1, 10, 10)


# ---- show_* on a real (tiny) trained run ----------------------------------------------------------------


def test_show_filters_writes_into_the_run_folder(tiny):
    run, _ = tiny
    out = show_filters(run)
    assert out == run / "filters.png"
    check_png(out)


@pytest.mark.parametrize("mode,size", [("L", (28, 28)), ("RGB", (31, 17)), ("RGBA", (9, 40)),
                                       ("P", (13, 13))])
def test_show_features_takes_any_image_file(tiny, tmp_path, mode, size):
    run, _ = tiny
    image = write_image(tmp_path / f"in-{mode}.png", mode=mode, size=size)
    out = show_features(run, image, tmp_path / "features.png", channels=4)
    check_png(out)


def test_show_features_default_output_and_missing_image(tiny, tmp_path):
    run, _ = tiny
    image = write_image(tmp_path / "shoe.jpg", mode="RGB", size=(20, 20), fmt="JPEG")
    assert show_features(run, image) == run / "features-shoe.png"
    with pytest.raises(ResnetlabError, match="no such image file"):
        show_features(run, tmp_path / "nothing.png")


def test_show_curves_of_two_runs(tiny, tmp_path):
    run, _ = tiny
    other = tmp_path / "second"
    shutil.copytree(run, other)
    out = show_curves([run, other], tmp_path / "curves.png", x="epochs")
    check_png(out)
    assert show_curves([run]) == run / "curves.png"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    check_png(png_bytes(plot_run_curves, {"a": records, "b": records[:3]}))


def test_show_confusion(tiny, tmp_path):
    run, data_dir = tiny
    check_png(show_confusion(run, tmp_path / "c.png", data_dir=data_dir))


def test_missing_or_non_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(ResnetlabError, match="no such run folder"):
        show_filters(tmp_path / "missing")
    with pytest.raises(ResnetlabError, match="not a run folder"):
        show_curves([tmp_path])


def test_a_flip_run_is_shown_unmirrored_and_reported_with_both_views_averaged(tiny_flip):
    from resnetlab.data import load_dataset
    from resnetlab.predict import load_run
    from resnetlab.run import load_trained
    from resnetlab.train.evaluate import evaluate_run
    from resnetlab.viz.report import predict

    run_dir, data_dir = tiny_flip
    image = torch.randint(0, 256, (1, 12, 12), dtype=torch.uint8)
    shown, x = prepare_image(load_run(run_dir), image)
    assert shown.shape == (1, 12, 12) and x.shape == (1, 1, 12, 12)
    assert torch.allclose(shown * 255, image.float(), atol=1e-3)   # the image itself, not its mirror
    model, record, normalizer = load_trained(run_dir)
    test = load_dataset("fashion-mnist", data_dir=data_dir).test
    probs = predict(model, test, record, normalizer)
    x = normalizer(test.images)
    with torch.no_grad():
        want = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert probs.shape == (64, 10) and torch.allclose(probs, want, atol=1e-5)
    top1 = 1 - (probs.argmax(1) == test.labels).double().mean().item()
    assert evaluate_run(run_dir, data_dir=data_dir)["top1_error"] == pytest.approx(top1)

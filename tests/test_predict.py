"""resnetlab.predict: a tiny run trained with the real trainer classifies image files of any mode and
size with the run's own preprocessing."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from fakedata import write_class_folder, write_fashion_like
from PIL import Image

from resnetlab import ResnetlabError
from resnetlab.data.augment import Normalizer
from resnetlab.data.decode import decode_image
from resnetlab.data.loader import View, apply_view
from resnetlab.predict import LUMINANCE, collect_images, load_run, predict
from resnetlab.run import find_run
from resnetlab.train.loop import TrainConfig, train
from resnetlab.train.recipe import get_recipe

FIXED = dict(precision="fp32", channels_last="off", compile="off")


def train_tiny(root, data="fashion-mnist", data_dir=None, **recipe):
    """A finished run of the real trainer on tiny data (a few seconds on a CPU)."""
    if data_dir is None:
        write_fashion_like(root / "data", n_train=256, n_test=64, size=12)
        data_dir = str(root / "data")
    overrides = {**FIXED, "epochs": 2, "batch_size": 32, **recipe}
    train(TrainConfig(model="resnet8", data=data, data_dir=data_dir, out=str(root / "run"),
                      recipe=get_recipe("fast", **overrides)), progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        return train_tiny(root)


@pytest.fixture(scope="module")
def crop_run_dir(tmp_path_factory):
    """An RGB run on 24x24 folder images trained on 16x16 crops and evaluated on the centre view,
    with a per-pixel mean: the ImageNet-style preprocessing path."""
    root = tmp_path_factory.mktemp("crop")
    write_class_folder(root / "images", {"a": 12, "b": 12}, size=(24, 24))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        return train_tiny(root, data=str(root / "images"), data_dir="", epochs=1, batch_size=8,
                          crop_size=16, augment="scale-crop-flip", eval_view="center",
                          normalize="pixel-mean")


def save(path, image: Image.Image, fmt: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return path


def odd_images(folder):
    """Images in every mode and odd sizes (files named by what they are)."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    wide = Image.fromarray(rng.integers(0, 256, (7, 300, 3), dtype=np.uint8))
    sixteen = Image.fromarray(rng.integers(0, 65536, (20, 20)).astype(np.uint16))
    return [
        save(folder / "gray.png", rgb.convert("L"), "PNG"),
        save(folder / "rgb.jpg", rgb, "JPEG"),
        save(folder / "rgba.png", rgb.convert("RGBA"), "PNG"),
        save(folder / "palette.png", rgb.convert("P"), "PNG"),
        save(folder / "palette.gif", rgb.convert("P"), "GIF"),
        save(folder / "sixteen.png", sixteen, "PNG"),
        save(folder / "sixteen.tif", sixteen, "TIFF"),
        save(folder / "bilevel.bmp", rgb.convert("1"), "BMP"),
        save(folder / "cmyk.jpg", rgb.convert("CMYK"), "JPEG"),
        save(folder / "rgb.webp", rgb, "WEBP"),
        save(folder / "wide.jpg", wide, "JPEG"),
        save(folder / "tall.png", wide.transpose(Image.Transpose.ROTATE_90), "PNG"),
        save(folder / "tiny.png", rgb.resize((1, 1)), "PNG"),
    ]


def reference(run, paths):
    """Softmax of the unfolded model on the preprocessed tensors, one image at a time."""
    out = []
    with torch.no_grad():
        for p in paths:
            x = run.prepare(decode_image(p.read_bytes(), str(p)))
            out.append(run.model(x[None]).softmax(1)[0])
    return torch.stack(out)


def test_every_mode_and_size_is_predicted_as_the_model_would(run_dir, tmp_path):
    run = load_run(run_dir)
    paths = odd_images(tmp_path / "img")
    results = predict(run_dir, paths, topk=3, device="cpu")
    assert [r["file"] for r in results] == [str(p) for p in paths]
    expected = reference(run, paths)
    classes = json.loads((run_dir / "config.json").read_text())["classes"]
    for r, probs in zip(results, expected, strict=True):
        preds = r["predictions"]
        assert len(preds) == 3
        assert [p["index"] for p in preds] == probs.topk(3).indices.tolist()
        assert [p["class"] for p in preds] == [classes[p["index"]] for p in preds]
        assert [p["probability"] for p in preds] == pytest.approx(probs.topk(3).values.tolist(), abs=1e-5)
        assert preds[0]["probability"] >= preds[1]["probability"] >= preds[2]["probability"]


def test_an_image_of_the_stored_size_gets_exactly_the_evaluation_input(run_dir, tmp_path):
    run = load_run(run_dir)
    assert run.geometry == {"mode": "resize", "size": [12, 12]}
    array = np.random.default_rng(2).integers(0, 256, (12, 12), dtype=np.uint8)
    path = save(tmp_path / "x.png", Image.fromarray(array), "PNG")
    image = decode_image(path.read_bytes())
    expected = apply_view(image[None], View("none"), None, run.normalizer, False)[0]
    assert torch.equal(run.prepare(image), expected)
    with torch.no_grad():
        top = run.model(expected[None]).argmax(1).item()
    assert predict(run, [path], topk=1, device="cpu")[0]["predictions"][0]["index"] == top


def test_channels_follow_the_run(run_dir, crop_run_dir):
    gray_run, rgb_run = load_run(run_dir), load_run(crop_run_dir)
    rgb = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    luminance = sum(w * c for w, c in zip(LUMINANCE, rgb.float(), strict=True))
    assert torch.allclose(gray_run.to_channels(rgb)[0], luminance)
    gray = torch.randint(0, 256, (1, 24, 24), dtype=torch.uint8)
    assert torch.equal(rgb_run.to_channels(gray), gray.float().expand(3, -1, -1))
    assert rgb_run.prepare(gray).shape == (3, 16, 16)
    # a gray picture saved as RGB predicts as the gray picture itself
    equal = gray.expand(3, -1, -1)[:, :12, :12]
    assert torch.allclose(gray_run.prepare(equal), gray_run.prepare(gray[:, :12, :12]), atol=1e-5)


def test_crop_run_resizes_the_shorter_side_and_crops_the_centre(crop_run_dir, tmp_path):
    run = load_run(crop_run_dir)
    assert run.stored_size == (3, 24, 24) and run.input_size == (3, 16, 16)
    assert run.geometry == {"mode": "resize-shorter-center-crop", "shorter_side": 18, "crop": [16, 16]}
    assert run.normalizer.mean.shape == (3, 24, 24)   # per-pixel mean at the stored size
    # an image of the stored size: what the run's own evaluation view feeds the network
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    expected = apply_view(image[None], View("center", size=16), None, run.normalizer, False)[0]
    assert torch.allclose(run.prepare(image), expected, atol=1e-4)
    paths = odd_images(tmp_path / "img")
    results = predict(run, paths, topk=2, device="cpu")
    assert len(results) == len(paths)
    assert [r["predictions"][0]["index"] for r in results] == reference(run, paths).argmax(1).tolist()


def test_ten_crop_runs_average_the_crops(crop_run_dir, tmp_path):
    run = load_run(crop_run_dir)
    run.view = "ten-crop"
    path = save(tmp_path / "x.png", Image.fromarray(np.full((40, 30, 3), 90, np.uint8)), "PNG")
    x = run.prepare(decode_image(path.read_bytes()))
    assert x.shape == (10, 3, 16, 16)
    with torch.no_grad():
        expected = run.model(x).softmax(1).mean(0)
    got = predict(run, [path], topk=2, device="cpu")[0]["predictions"]
    assert [p["probability"] for p in got] == pytest.approx(expected.topk(2).values.tolist(), abs=1e-5)


def test_a_folder_gives_its_images_sorted(run_dir, tmp_path):
    folder = tmp_path / "folder"
    for name in ("b.png", "a.jpg", "c.tiff"):
        fmt = {"png": "PNG", "jpg": "JPEG", "tiff": "TIFF"}[name.split(".")[1]]
        save(folder / name, Image.new("L", (9, 9), 120), fmt)
    (folder / "notes.txt").write_text("not an image")
    save(folder / ".hidden.png", Image.new("L", (9, 9)), "PNG")
    (folder / "sub").mkdir()
    save(folder / "sub" / "d.png", Image.new("L", (9, 9)), "PNG")
    assert [p.name for p in collect_images([folder])] == ["a.jpg", "b.png", "c.tiff"]
    results = predict(run_dir, [folder], topk=1, device="cpu")
    assert [r["file"] for r in results] == [str(folder / n) for n in ("a.jpg", "b.png", "c.tiff")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResnetlabError, match="no images"):
        collect_images([tmp_path / "empty"])


def test_batching_does_not_change_the_results(run_dir, tmp_path):
    paths = odd_images(tmp_path / "img")
    one = predict(run_dir, paths, topk=2, device="cpu", batch_size=1)
    many = predict(run_dir, paths, topk=2, device="cpu", batch_size=5)
    for a, b in zip(one, many, strict=True):
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
        assert [p["probability"] for p in a["predictions"]] == pytest.approx(
            [p["probability"] for p in b["predictions"]], abs=1e-5)


def test_unreadable_files_are_skipped_with_a_warning(run_dir, tmp_path):
    good = save(tmp_path / "good.png", Image.new("L", (12, 12), 50), "PNG")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    skipped = []
    results = predict(run_dir, [bad, good, missing], topk=1, device="cpu",
                      on_skip=lambda path, reason: skipped.append((path, reason)))
    assert [r["file"] for r in results] == [str(good)]
    assert [s[0] for s in skipped] == [str(bad), str(missing)]
    assert "cannot decode" in skipped[0][1] and "BytesIO" not in skipped[0][1]
    with pytest.warns(UserWarning, match="skipping .*bad.jpg"):
        predict(run_dir, [bad, good], topk=1, device="cpu")
    with pytest.raises(ResnetlabError, match="none of the 2 image"), pytest.warns(UserWarning):
        predict(run_dir, [bad, missing], device="cpu")


def test_topk_is_capped_at_the_class_count_and_must_be_positive(run_dir, tmp_path):
    path = save(tmp_path / "x.png", Image.new("L", (12, 12), 200), "PNG")
    preds = predict(run_dir, [path], topk=50, device="cpu")[0]["predictions"]
    assert len(preds) == 10 and sum(p["probability"] for p in preds) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ResnetlabError, match="--topk"):
        predict(run_dir, [path], topk=0)


def test_checkpoint_folders_and_unfinished_runs(run_dir, tmp_path):
    ckpt = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    found = lambda p: (lambda run, weights: (run.root, weights))(*find_run(p))  # noqa: E731
    assert found(ckpt) == (run_dir, ckpt / "model.safetensors")
    assert found(run_dir) == (run_dir, run_dir / "model.safetensors")
    assert found(run_dir / "model.safetensors") == (run_dir, run_dir / "model.safetensors")
    early, final = load_run(ckpt), load_run(run_dir)
    assert early.source == ckpt / "model.safetensors"
    assert not torch.equal(early.model.fc.weight, final.model.fc.weight)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "model.safetensors").unlink()
    latest = sorted((unfinished / "checkpoints").glob("step-*"))[-1]
    assert find_run(unfinished)[1] == latest / "model.safetensors"
    image = save(tmp_path / "x.png", Image.new("L", (12, 12), 90), "PNG")
    assert predict(ckpt, [image], device="cpu")[0]["predictions"]


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "nope", "not found"),
    (lambda p: p, "not a run folder"),
    (lambda p: p / "file.txt", "is a file"),
])
def test_bad_run_paths_are_user_errors(tmp_path, make, message):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ResnetlabError, match=message):
        load_run(make(tmp_path))


def test_half_written_checkpoint_is_refused(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    tmp = run / "checkpoints" / "step-00000099.tmp"
    tmp.mkdir()
    with pytest.raises(ResnetlabError, match="half-written"):
        find_run(tmp)


def test_input_normalizer_matches_the_run_statistics(run_dir):
    run = load_run(run_dir)
    norm = run.input_normalizer()
    assert isinstance(norm, Normalizer)
    assert torch.equal(norm.mean, run.normalizer.mean) and torch.equal(norm.std, run.normalizer.std)


def test_decoded_bytes_round_trip_through_prepare(run_dir):
    """prepare() takes what decode_image gives for any encoded bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (5, 50), (10, 200, 30)).save(buffer, "PNG")
    x = load_run(run_dir).prepare(decode_image(buffer.getvalue()))
    assert x.shape == (1, 12, 12) and torch.isfinite(x).all()


def test_flip_runs_average_the_image_and_its_mirror(tiny_flip, tmp_path):
    run = load_run(tiny_flip[0])
    assert run.view == "flip" and run.geometry == {"mode": "resize", "size": [12, 12], "flip": True}
    assert run.normalizer.mean.shape == (1, 12, 12)   # a per-pixel mean: the mirror needs its own
    image = torch.randint(0, 256, (1, 12, 12), dtype=torch.uint8)
    # an image of the stored size gets exactly the run's evaluation inputs: itself, then its mirror
    expected = apply_view(image[None], View("flip"), None, run.normalizer, False)
    x = run.prepare(image)
    assert x.shape == (2, 1, 12, 12) and torch.equal(x, expected)
    assert torch.equal(run.prepare(image, crops=False), expected[0])
    path = save(tmp_path / "x.png", Image.fromarray(image[0].numpy()), "PNG")
    with torch.no_grad():
        probs = run.model(x).softmax(1).mean(0)
    got = predict(run, [path, path], topk=3, device="cpu", batch_size=2)
    for r in got:
        assert [p["index"] for p in r["predictions"]] == probs.topk(3).indices.tolist()
        assert [p["probability"] for p in r["predictions"]] == pytest.approx(probs.topk(3).values.tolist(),
                                                                            abs=1e-5)

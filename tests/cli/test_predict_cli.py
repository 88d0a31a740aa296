import json

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.cli import main
from resnetlab.data.decode import decode_image
from resnetlab.predict import load_run


@pytest.fixture(scope="module")
def run_dir(tiny):
    return tiny[0]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (7, 300, 3), dtype=np.uint8)).save(folder / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)).convert("RGBA").save(folder / "c.webp")
    Image.fromarray(rng.integers(0, 256, (33, 33), dtype=np.uint8)).convert("P").save(folder / "d.gif")
    return folder


def test_json_schema_and_the_model_argmax(run_dir, images, capsys):
    assert main(["predict", str(run_dir), str(images), "--json", "--topk", "3", "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    files = sorted(images.iterdir())
    assert [r["file"] for r in results] == [str(f) for f in files]
    run = load_run(run_dir)
    for r, path in zip(results, files, strict=True):
        assert set(r) == {"file", "predictions"} and len(r["predictions"]) == 3
        for p in r["predictions"]:
            assert set(p) == {"class", "index", "probability"}
            assert p["class"] == run.classes[p["index"]] and 0 <= p["probability"] <= 1
        with torch.no_grad():
            probs = run.model(run.prepare(decode_image(path.read_bytes()))[None]).softmax(1)[0]
        assert [p["index"] for p in r["predictions"]] == probs.topk(3).indices.tolist()
        assert r["predictions"][0]["probability"] == pytest.approx(probs.max().item(), abs=1e-5)


def test_text_output_lists_topk_per_image(run_dir, images, capsys):
    files = [str(images / "a.png"), str(images / "b.jpg")]
    assert main(["predict", str(run_dir), *files, "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == files[0] and lines[3] == files[1] and len(lines) == 6
    assert lines[1].lstrip().startswith("1. ") and lines[2].lstrip().startswith("2. ") and "%" in lines[1]


def test_a_corrupt_file_is_a_warning_and_the_others_are_predicted(run_dir, images, capsys):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["predict", str(run_dir), str(images), "--json", "--topk", "1"]) == 0
    captured = capsys.readouterr()
    assert [r["file"].rsplit("/", 1)[1] for r in json.loads(captured.out)] == ["a.png", "b.jpg", "c.webp",
                                                                             "d.gif"]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "broken.png" in warnings[0] and "1 of 5 images" in warnings[1]
    assert "error" not in captured.err


def test_all_corrupt_is_one_error_line_and_exit_2(run_dir, tmp_path, capsys):
    for name in ("x.jpg", "y.png"):
        (tmp_path / name).write_bytes(b"garbage")
    assert main(["predict", str(run_dir), str(tmp_path / "x.jpg"), str(tmp_path / "y.png")]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none of the 2 image(s) could be read" in errors[0]
    assert captured.out == ""


def test_checkpoint_folder_is_accepted(run_dir, images, capsys):
    ckpt = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    assert main(["predict", str(ckpt), str(images / "a.png"), "--json", "--topk", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


@pytest.mark.parametrize("argv,message", [
    (["{tmp}/missing-run", "{img}"], "not found"),
    (["{tmp}", "{img}"], "not a run folder"),
    (["{run}", "{img}", "--topk", "0"], "--topk must be 1 or more"),
    (["{run}", "{tmp}/empty"], "no images"),
])
def test_user_errors_are_one_line(run_dir, images, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, img=images / "a.png", run=run_dir) for a in argv]
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]

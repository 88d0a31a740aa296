"""`resnetlab show ...` end to end on a tiny run trained with the real trainer."""

import io
import shutil

import pytest
from fakedata import write_image
from PIL import Image

from resnetlab.cli import main


def check_png(path, min_side=200):
    data = open(path, "rb").read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.format == "PNG" and min(im.size) >= min_side and max(im.size) <= 4000


def run_ok(argv, capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]   # the path is the last line


def test_show_filters(tiny, tmp_path, capsys):
    run, _ = tiny
    out = tmp_path / "f.png"
    assert run_ok(["show", "filters", str(run), "--out", str(out)], capsys) == str(out)
    check_png(out)
    assert run_ok(["show", "filters", str(run)], capsys) == str(run / "filters.png")
    check_png(run / "filters.png")


def test_show_templates_reports_accuracy_above_chance(tiny, tmp_path, capsys, monkeypatch):
    _, data_dir = tiny
    monkeypatch.chdir(tmp_path)
    assert main(["show", "templates", "--data", "fashion-mnist", "--data-dir", data_dir,
                 "--epochs", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "templates-fashion-mnist.png"
    check_png(tmp_path / lines[-1])
    accuracy = float(lines[0].split("test accuracy ")[1].split(",")[0])
    assert accuracy > 0.5   # 4 classes used: chance is 0.25


@pytest.mark.parametrize("mode,size,fmt", [("L", (28, 28), "PNG"), ("RGB", (45, 17), "JPEG"),
                                           ("RGBA", (9, 31), "PNG"), ("P", (13, 12), "GIF")])
def test_show_features_on_any_image_file(tiny, tmp_path, capsys, mode, size, fmt):
    run, _ = tiny
    image = write_image(tmp_path / f"in.{fmt.lower()}", mode=mode, size=size, fmt=fmt)
    out = tmp_path / "features.png"
    assert run_ok(["show", "features", str(run), str(image), "--out", str(out), "--channels", "6"],
                  capsys) == str(out)
    check_png(out)


def test_show_curves_of_two_runs(tiny, tmp_path, capsys):
    run, _ = tiny
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    out = tmp_path / "curves.png"
    assert run_ok(["show", "curves", str(run), str(other), "--out", str(out)], capsys) == str(out)
    check_png(out)
    assert run_ok(["show", "curves", str(other), "--x", "epochs"], capsys) == str(other / "curves.png")


def test_show_confusion(tiny, tmp_path, capsys):
    run, _ = tiny
    out = tmp_path / "confusion.png"
    assert run_ok(["show", "confusion", str(run), "--out", str(out), "--device", "cpu"], capsys) == str(out)
    check_png(out)


@pytest.mark.parametrize("argv,message", [
    (["show", "filters", "{tmp}/missing"], "no such run folder"),
    (["show", "curves", "{tmp}"], "not a run folder"),
    (["show", "confusion", "{tmp}/missing"], "no such run folder"),
    (["show", "features", "{tmp}/missing", "{tmp}/x.png"], "no such run folder"),
    (["show", "features", "{run}", "{tmp}/missing.png"], "no such image file"),
    (["show", "features", "{run}", "{tmp}/not-an-image.png"], "cannot decode"),
    (["show", "templates", "--data", "{tmp}/no-such-folder"], ""),
])
def test_bad_input_is_one_error_line(tiny, tmp_path, capsys, argv, message):
    run, _ = tiny
    (tmp_path / "not-an-image.png").write_text("hello")
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]

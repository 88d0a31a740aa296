"""`resnetlab report RUN_DIR`: one self-contained HTML page about a trained run."""

import base64
import io
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

from resnetlab.cli import main


class Page(HTMLParser):
    """Every tag's attributes, and the rows of the per-class table."""

    def __init__(self):
        super().__init__()
        self.tags, self.per_class_rows = [], 0
        self._in_per_class = self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table" and "per-class" in (attrs.get("class") or ""):
            self._in_per_class = True
        elif tag == "tbody" and self._in_per_class:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.per_class_rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_per_class = self._in_body = False


def parse(path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return text, page


def test_report_is_one_self_contained_page(tiny, tmp_path, capsys):
    run, data_dir = tiny
    out = tmp_path / "pages" / "r8.html"
    assert main(["report", str(run), "--out", str(out), "--samples", "6", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    text, page = parse(out)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for heading in ("Summary", "Learning curves", "Confusion matrix", "Per-class accuracy",
                    "Sample test predictions", "First-layer filters"):
        assert f"<h2>{heading}</h2>" in text
    # Nothing is fetched: no script, no external link, every picture inlined as a valid PNG.
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags
    assert "http://" not in text and "https://" not in text
    images = [a["src"] for t, a in page.tags if t == "img"]
    figures = [a for t, a in page.tags if t == "img" and a.get("class") == "figure"]
    assert len(figures) == 3                      # curves, confusion matrix, filters
    assert len(images) >= 3 + 6                   # + the 6 random samples (+ some mistakes)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.load()
            assert im.format == "PNG"
    assert page.per_class_rows == 10              # fake Fashion-MNIST: 10 classes
    assert "6 test images drawn at random" in text
    assert "resnet8" in text


def test_report_default_output_is_in_the_run_folder(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny[0], run)
    assert main(["report", str(run), "--samples", "2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run / "report.html")
    assert (run / "report.html").read_text(encoding="utf-8").count('class="sample') >= 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--samples", "0"], "--samples must be 1 or more"),
])
def test_report_bad_flags_get_one_error_line(tiny, argv, message, capsys):
    assert main(["report", str(tiny[0]), *argv]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a run folder" in err[0]

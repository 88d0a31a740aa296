"""The HTML report as a real browser draws it: headless Chromium (Debian's `chromium` package)."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from resnetlab.viz.report import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1280, 12000   # a window taller than the page: the screenshot holds all of it


def browser() -> str:
    found = next(filter(None, map(shutil.which, BROWSERS)), None)
    if found is None:
        pytest.skip("no headless Chromium here (Debian: apt-get install chromium)")
    return found


@pytest.mark.slow
def test_the_report_renders_whole_and_not_blank(tiny, tmp_path):
    exe = browser()
    page = write_report(tiny[0], tmp_path / "report.html", device="cpu")
    shot = tmp_path / "report.png"
    subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    gray = np.asarray(Image.open(shot).convert("L"))
    assert gray.shape == (HEIGHT, WIDTH)
    ink = gray < 245
    rows, cols = np.nonzero(ink.any(1))[0], np.nonzero(ink.any(0))[0]
    # Not blank: text, tables and figures cover a real share of the page, in many shades.
    assert ink[: rows.max() + 1].mean() > 0.03 and len(np.unique(gray)) > 64
    # The whole page: it ends inside the window (so nothing was cut off below) after every section
    # (summary, curves, confusion matrix, per-class table, samples, filters: well over 2,000 px).
    assert 2000 < rows.max() < HEIGHT - 200
    # Nothing runs off the right edge at a common laptop width.
    assert cols.max() < WIDTH - 20
    # Every figure is inlined as a data: URI, so the page needs no file beside it.
    html = page.read_text()
    assert html.count("<img") >= 4 and "data:image/png;base64," in html

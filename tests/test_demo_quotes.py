"""`make demo` quotes the depth verdicts of committed longer runs (Makefile: FULL_DEPTH): those
files must exist and hold the lines it greps for, or the demo would end quoting nothing."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_files_the_demo_quotes_hold_their_verdicts():
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")  # join continued lines
    (line,) = [x for x in makefile.splitlines() if x.startswith("FULL_DEPTH :=")]
    files = line.split(":=", 1)[1].split()
    assert files
    for name in files:
        text = (ROOT / name).read_text()
        verdicts = re.findall(r"^- ResNet-56 vs ResNet-20, (test|training) error: ", text, re.M)
        assert sorted(verdicts) == ["test", "training"], name

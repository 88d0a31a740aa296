"""Keep the finished runs of the seed sweeps (benchmarks/seed_sweeps.sh) across fresh checkouts.

A finished run folder is reused by `resnetlab reproduce` from its config.json, metrics.jsonl and
summary.json alone (no weights needed for the tables, verdicts and curves), so those small files are
committed under docs/results/seed-runs/ as each run finishes, and copied back before the sweep runs
again on a new machine:

    python benchmarks/seed_runs.py save      # results/OUT/runs/NAME/seed-S -> docs/results/seed-runs/
    python benchmarks/seed_runs.py restore   # the reverse, never overwriting a run folder already there
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIVE, KEPT = ROOT / "results", ROOT / "docs" / "results" / "seed-runs"
FILES = ("config.json", "metrics.jsonl", "summary.json", "preprocess.safetensors")


# results/OUT/runs/NAME/seed-S <-> docs/results/seed-runs/OUT/NAME/seed-S (a folder named runs/ is
# git-ignored everywhere: it is where training writes by default).
def finished_runs(root: Path, layout: str) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"{layout}/summary.json"))


def copy_runs(src: Path, dst: Path, overwrite: bool) -> int:
    saving = src == LIVE
    n = 0
    for run in finished_runs(src, "*/runs/*/seed-*" if saving else "*/*/seed-*"):
        parts = run.relative_to(src).parts    # (OUT, "runs", NAME, seed-S) or (OUT, NAME, seed-S)
        out, name, seed = parts[0], parts[-2], parts[-1]
        target = dst / out / name / seed if saving else dst / out / "runs" / name / seed
        if target.exists() and not overwrite:
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
        n += 1
    return n


def main(argv: list[str]) -> int:
    if argv[:1] == ["save"]:
        print(f"kept {copy_runs(LIVE, KEPT, overwrite=True)} finished runs in {KEPT}")
    elif argv[:1] == ["restore"]:
        print(f"restored {copy_runs(KEPT, LIVE, overwrite=False)} finished runs into {LIVE}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Recipe trials for fast training (issue 17): ResNet-20 on Fashion-MNIST to accuracy in few epochs.

Each trial is the `fast` recipe with some flags changed; each runs for --epochs over --seeds, one
training at a time, and is evaluated twice: as trained (the run's own final fp32 evaluation) and with
test-time flip averaging (`resnetlab eval RUN --eval-view flip`, whose time is counted). Finished runs
are reused and partial ones resumed, so the command can be stopped and run again.

    python benchmarks/recipe_trials.py --epochs 6 --seeds 0 --trials fast bn-wd0 ema
    python benchmarks/recipe_trials.py --epochs 6 8 --seeds 0 1 2 --trials fast --markdown docs/results/x.md

Runs go to OUT/e{epochs}/{trial}/seed-S (default OUT: results/recipe-trials).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from resnetlab.stats import compare

ROOT = Path(__file__).resolve().parents[1]
RESNETLAB = [sys.executable, "-m", "resnetlab"]

# name -> flags on top of `--recipe fast` (fast: SGD nesterov lr 0.2 wd 5e-4, label smoothing 0.1,
# one-cycle with 15% warm-up, flip only, batch 128).
TRIALS: dict[str, list[str]] = {
    "fast": [],
    "bn-wd0": ["--bn-weight-decay", "0"],
    "ema": ["--ema", "0.998"],
    "lr0.4": ["--lr", "0.4"],
    "lr0.1": ["--lr", "0.1"],
    "wd1e-3": ["--weight-decay", "1e-3"],
    "wd2.5e-4": ["--weight-decay", "2.5e-4"],
    "bs256": ["--batch-size", "256", "--lr", "0.4"],
    "bs64": ["--batch-size", "64", "--lr", "0.1"],
    "ls0": ["--label-smoothing", "0"],
    "ls0.2": ["--label-smoothing", "0.2"],
    "warmup0.3": ["--warmup", "0.3"],
    "pad1": ["--augment", "pad-crop-flip", "--pad", "1"],
    "pad2": ["--augment", "pad-crop-flip", "--pad", "2"],
    "altflip": ["--augment", "alt-flip"],
    "cosine": ["--schedule", "cosine"],
    "bn-wd0+wd2.5e-4": ["--bn-weight-decay", "0", "--weight-decay", "2.5e-4"],
    "fp32": ["--precision", "fp32", "--channels-last", "on", "--compile", "off"],
    "lookahead": ["--lookahead", "0.774"],
    "warmup0.05": ["--warmup", "0.05"],
}


def run_dir(out: Path, epochs: float, trial: str, seed: int) -> Path:
    return out / f"e{epochs:g}" / trial / f"seed-{seed}"


def train(run: Path, trial: str, epochs: float, seed: int, extra: list[str]) -> float | None:
    """Train (or resume, or reuse) one run; the wall time of the command when it trained from scratch."""
    if (run / "summary.json").is_file():
        return None
    if (run / "config.json").is_file():
        cmd = [*RESNETLAB, "train", "--resume", str(run), "--no-progress"]
    else:
        cmd = [*RESNETLAB, "train", "--model", "resnet20", "--data", "fashion-mnist", "--recipe", "fast",
               "--epochs", f"{epochs:g}", "--seed", str(seed), "--out", str(run), "--no-progress",
               *TRIALS[trial], *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    if cmd[4] != "--resume":
        (run / "trial.json").write_text(json.dumps({"command": " ".join(cmd[2:]), "wall_s": wall}))
    return wall


def tta(run: Path) -> dict:
    """Test error with flip averaging, cached in the run folder; its time is the whole eval command's."""
    f = run / "tta-flip.json"
    if f.is_file():
        return json.loads(f.read_text())
    t0 = time.time()
    out = subprocess.run([*RESNETLAB, "eval", str(run), "--eval-view", "flip", "--json"], check=True,
                         capture_output=True, text=True).stdout
    r = {"top1_error": json.loads(out)["top1_error"], "eval_s": time.time() - t0}
    f.write_text(json.dumps(r))
    return r


def mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", nargs="+", default=["fast"], choices=sorted(TRIALS))
    p.add_argument("--epochs", type=float, nargs="+", default=[6])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default=str(ROOT / "results" / "recipe-trials"))
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("extra", nargs="*", help="flags for every run (after --)")
    args = p.parse_args()
    out = Path(args.out)
    rows = ["| trial | epochs | flags | test acc per seed (%) | mean ± std | with flip TTA, per seed | "
            "mean ± std | train wall (s) | TTA eval (s) |", "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for epochs in args.epochs:
        tta_errors = {}
        for trial in args.trials:
            accs, ttas, walls, evals = [], [], [], []
            for seed in args.seeds:
                run = run_dir(out, epochs, trial, seed)
                train(run, trial, epochs, seed, args.extra)
                summary = json.loads((run / "summary.json").read_text())
                accs.append(100 * summary["test_accuracy"])
                t = tta(run)
                tta_errors.setdefault(trial, []).append(t["top1_error"])
                ttas.append(100 * (1 - t["top1_error"]))
                evals.append(t["eval_s"])
                if (run / "trial.json").is_file():
                    walls.append(json.loads((run / "trial.json").read_text())["wall_s"])
            rows.append(f"| {trial} | {epochs:g} | {' '.join(TRIALS[trial]) or '(fast)'} | "
                        f"{', '.join(f'{a:.2f}' for a in accs)} | {mean_std(accs)} | "
                        f"{', '.join(f'{a:.2f}' for a in ttas)} | {mean_std(ttas)} | "
                        f"{', '.join(f'{w:.0f}' for w in walls) or '-'} | "
                        f"{statistics.mean(evals):.1f} |")
            print(rows[-1], flush=True)
        # Each trial against `fast` on the same seeds (same data order): paired t on the flip-averaged
        # test error, "not resolved" while the interval holds 0.
        if "fast" in tta_errors and len(args.seeds) > 1:
            for trial, errs in tta_errors.items():
                if trial != "fast":
                    verdict, _ = compare(trial, errs, "fast", tta_errors["fast"], "test error with flip TTA")
                    verdicts.append(f"- {epochs:g} epochs: {verdict}")
    table = "\n".join(rows + [""] + verdicts)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()

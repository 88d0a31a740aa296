"""Time to accuracy: `resnetlab train --model resnet20 --data fashion-mnist --recipe fast`, start
to finish, and its test accuracy against wall time.

    python benchmarks/time_to_accuracy.py                 # train (fresh engine cache), then plot
    python benchmarks/time_to_accuracy.py --run-dir RUN   # only read and plot an existing run

Prints the wall time of the whole command (process start to exit, the engine probe and data
loading included), when each accuracy threshold was first reached, and writes a PNG of accuracy
against time next to the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", help="plot this finished run instead of training")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--out", default="runs/time-to-accuracy")
    p.add_argument("--figure", help="PNG path (default: RUN/accuracy_vs_time.png)")
    p.add_argument("--keep-cache", action="store_true", help="reuse the engine cache (default: probe anew)")
    args = p.parse_args()

    wall = None
    run = Path(args.run_dir or args.out)
    if not args.run_dir:
        env = dict(os.environ)
        if not args.keep_cache:   # a fresh machine has no cached probe: measure that case
            env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="resnetlab-cache-")
        t0 = time.time()
        cmd = [sys.executable, "-m", "resnetlab", "train", "--model", args.model, "--data", args.data,
               "--recipe", args.recipe, "--out", str(run), "--no-progress"]
        subprocess.run(cmd, check=True, env=env)
        wall = time.time() - t0

    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["kind"] == "eval"]
    print(f"{'epoch':>6} {'time s':>8} {'test acc':>9}")
    for r in evals:
        print(f"{r['epoch']:>6.1f} {r['time']:>8.0f} {1 - r['test_top1_error']:>9.4f}")
    for target in (0.93, 0.935, 0.94):
        hit = next((r for r in evals if 1 - r["test_top1_error"] >= target), None)
        when = f"{hit['time']:.0f} s (epoch {hit['epoch']:.0f})" if hit else "never"
        print(f"first >= {target:.1%}: {when}")
    final = 1 - evals[-1]["test_top1_error"]
    if wall is not None:
        print(f"final test accuracy {final:.4f}; whole command {wall:.0f} s wall time")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["time"] for r in evals], [100 * (1 - r["test_top1_error"]) for r in evals], "o-")
    ax.axhline(93.5, color="gray", ls="--", lw=1, label="93.5% target")
    ax.axvline(600, color="red", ls=":", lw=1, label="10 minutes")
    ax.set_xlabel("wall time since start (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0, 100 * (1 - evals[0]["test_top1_error"]) - 2), 100)
    ax.set_title(f"{args.model} on {args.data}, recipe {args.recipe}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    figure = Path(args.figure) if args.figure else run / "accuracy_vs_time.png"
    fig.savefig(figure, dpi=120)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()

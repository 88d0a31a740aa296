"""`resnetlab report RUN_DIR`: one self-contained HTML page about a trained run."""

from __future__ import annotations


def add_commands(sub) -> None:
    p = sub.add_parser(
        "report", help="write one self-contained HTML page about a trained run",
        description="Evaluate a run and write one HTML file that opens in a browser from disk: summary "
                    "(model, data, recipe, engine, errors, wall time, parameters), learning curves, "
                    "confusion matrix, per-class accuracy, sample test predictions with their images, "
                    "first-layer filters. Every picture is embedded; nothing is fetched. Default output "
                    "RUN_DIR/report.html.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `resnetlab train`")
    p.add_argument("--out", help="HTML file to write")
    p.add_argument("--data", help="data set (default: the one the run was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--samples", type=int, default=24, help="random test images shown (default 24)")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=cmd_report)


def cmd_report(args) -> int:
    from ..viz.report import write_report

    print(write_report(args.run_dir, args.out, data=args.data, data_dir=args.data_dir, device=args.device,
                       samples=args.samples))
    return 0

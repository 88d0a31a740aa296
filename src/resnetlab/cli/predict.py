"""`resnetlab predict`: the top-k classes of image files with a trained run."""

from __future__ import annotations

import json
import sys


def add_commands(sub) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run (its own preprocessing)",
                       description="Top-k classes of images (JPEG, PNG, BMP, GIF, WEBP, TIFF; any size and "
                                   "mode) with a run's model, resized and normalised as the run's "
                                   "evaluation does. A folder stands for its images.")
    p.add_argument("source", metavar="RUN_OR_FILE",
                   help="a run folder of `resnetlab train`, one of its checkpoints/step-N folders, or an "
                        ".onnx file of `resnetlab export` (its sidecar FILE.json beside it; onnxruntime)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"file", "predictions": [{"class", "index", "probability"}]}')
    p.set_defaults(run=cmd_predict)


def cmd_predict(args) -> int:
    from ..exported import is_exported, load_exported
    from ..predict import collect_images, format_predictions, predict

    files = collect_images(args.images)
    source = load_exported(args.source) if is_exported(args.source) else args.source
    skipped = []

    def on_skip(path: str, reason: str) -> None:
        skipped.append(path)
        print(f"warning: skipping {path} ({len(skipped)} unreadable so far): {reason}", file=sys.stderr)

    results = predict(source, files, topk=args.topk, device=args.device, batch_size=args.batch_size,
                      on_skip=on_skip)
    if skipped:
        print(f"warning: {len(skipped)} of {len(files)} images could not be read and were skipped",
              file=sys.stderr)
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0

"""`resnetlab export`: a trained run as ONNX or TorchScript, BatchNorm folded, with a JSON sidecar."""

from __future__ import annotations

import json

from ..quantize import CALIBRATION_METHODS, QUANTIZE


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="export a trained run to ONNX or TorchScript (BatchNorm folded)",
                       description="Write the run's model for inference elsewhere, with BatchNorm folded "
                                   "into the convolutions, and FILE.json beside it: class names, input "
                                   "shape and the preprocessing the consumer must apply.")
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder of `resnetlab train`, or one of its checkpoints/step-N folders")
    p.add_argument("--format", default="onnx", metavar="onnx|torchscript", help="default: onnx")
    p.add_argument("--out", metavar="FILE", help="the file to write (FILE.json is written beside it)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--batch", default="dynamic", metavar="dynamic|N",
                   help="a dynamic batch axis (default) or a fixed batch size N")
    p.add_argument("--include-preprocess", action="store_true",
                   help="bake the run's normalisation in: the model takes uint8 pixels 0..255 "
                        "(default: float32 input, already normalised)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8: static post-training quantization in "
                   "onnxruntime (QDQ, per-channel int8 weights), calibrated on training images")
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="--quantize: training images to calibrate activation ranges on, prepared as the "
                        "run's evaluation prepares them (default 512)")
    p.add_argument("--calibration-method", default="minmax", choices=CALIBRATION_METHODS,
                   help="--quantize: how ranges are set from the calibration activations (default minmax)")
    p.add_argument("--no-check", action="store_true",
                   help="do not run the written file against PyTorch (onnxruntime / torch.jit.load)")
    p.add_argument("--json", action="store_true", help="print the sidecar (and the check) as JSON")
    p.set_defaults(run=cmd_export)


def cmd_export(args) -> int:
    from ..errors import ResnetlabError
    from ..export import export

    if not args.out:
        raise ResnetlabError("export needs --out FILE (e.g. --out model.onnx)")
    r = export(args.source, args.out, format=args.format, opset=args.opset, batch=args.batch,
               include_preprocess=args.include_preprocess, check=not args.no_check, quantize=args.quantize,
               calibration=args.calibration, calibration_method=args.calibration_method)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    fmt = r["format"] + (f", opset {r['opset']}" if r.get("opset") else "") + f", {r['precision']}"
    batch = "dynamic batch" if r["input"]["shape"][0] == "batch" else f"batch {r['input']['shape'][0]}"
    print(f"wrote {r['path']} ({fmt}, {r['exporter']} exporter, {r['batchnorm_folded']} BatchNorm layers "
          f"folded, input {r['input']['dtype']} {'x'.join(map(str, r['input']['shape'][1:]))}, {batch}) "
          f"and {r['sidecar']}")
    check = r.get("check")
    if check and check.get("checked") and "top1_agreement" in check:
        print(f"check: on {check['images']} calibration inputs the int8 file's top-1 class agrees with "
              f"PyTorch fp32 on {100 * check['top1_agreement']:.1f}%; test accuracy: `resnetlab eval "
              f"{r['path']}`")
    elif check and check.get("checked"):
        print(f"check: {check['runtime']} agrees with PyTorch, max |logit diff| "
              f"{check['max_abs_logit_diff']:.2g}")
    elif check:
        print(f"check skipped: {check['reason']}")
    pre = r["preprocess"]
    print("preprocessing the consumer applies:")
    for step in pre["steps"]:
        print(f"  - {step}")
    return 0

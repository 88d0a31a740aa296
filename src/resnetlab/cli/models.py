"""`resnetlab models`, `resnetlab summary`, `resnetlab conv`."""

from __future__ import annotations

import json

import torch

from ..models import conv_output_size, count_params, create_model, get_entry, list_models, summarize
from ..models.blocks import SHORTCUTS


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list every registered model with its parameter count")
    p.add_argument("--family", choices=["imagenet", "cifar", "classic"], help="only this family")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("summary", help="per-layer output shapes, parameters and mult-adds of a model")
    p.add_argument("name", help="a model name (see `resnetlab models`)")
    p.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"),
                   help="input size (default: the model's native size)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the family's)")
    p.add_argument("--shortcut", choices=SHORTCUTS, help="shortcut option where dimensions grow")
    p.add_argument("--stride-in-1x1", action="store_true",
                   help="bottleneck stride on the first 1x1 as in the paper (default: on the 3x3, v1.5)")
    p.add_argument("--json", action="store_true", help="print JSON (keys params, mult_adds, rows, ...)")
    p.set_defaults(run=cmd_summary)

    p = sub.add_parser("conv", help="convolution output size (N - F + 2P)/S + 1, and whether it tiles")
    p.add_argument("n", type=int, help="input size N")
    p.add_argument("f", type=int, help="filter size F")
    p.add_argument("--stride", "-s", type=int, default=1)
    p.add_argument("--padding", "-p", type=int, default=0)
    p.set_defaults(run=cmd_conv)


def cmd_models(args) -> int:
    rows = []
    for name in list_models(family=args.family):
        entry = get_entry(name)
        with torch.device("meta"):  # counting needs shapes only: skip allocation and init
            params = count_params(create_model(name))
        rows.append({"name": name, "family": entry.family, "params": params,
                     "input_size": list(entry.input_size)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<16} {'family':<9} {'input':<10} {'params':>13}")
    for r in rows:
        size = "x".join(map(str, r["input_size"]))
        print(f"{r['name']:<16} {r['family']:<9} {size:<10} {r['params']:>13,}")
    print("CIFAR-family nets exist for every depth 6n+2 (resnet8, plain14, cifar_resnet50, ...).")
    return 0


def cmd_summary(args) -> int:
    options = {k: v for k, v in (("shortcut", args.shortcut),) if v}
    if args.stride_in_1x1:
        options["stride_in_1x1"] = True
    entry = get_entry(args.name)
    size = tuple(args.input_size) if args.input_size else entry.input_size
    model = create_model(args.name, num_classes=args.num_classes, in_channels=size[0], **options)
    s = summarize(model, size)
    if args.json:
        print(json.dumps({"model": args.name, **s.to_dict()}, indent=2))
    else:
        print(s.table(title=f"{args.name} {options or ''}".strip()))
    return 0


def cmd_conv(args) -> int:
    try:
        print(conv_output_size(args.n, args.f, args.stride, args.padding))
    except ValueError as e:
        from ..errors import ResnetlabError
        raise ResnetlabError(str(e)) from None
    return 0

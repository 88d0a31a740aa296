"""`resnetlab data list`, `resnetlab data fetch NAME`."""

from __future__ import annotations

import json

from ..data import KNOWN_DATASETS, fetch, list_sources


def add_commands(sub) -> None:
    p = sub.add_parser("data", help="find and download the known data sets")
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    q = data_sub.add_parser("list", help="where each known data set was found, or where it was looked for")
    q.add_argument("--data-dir", help="look here first (then $RESNETLAB_DATA, ~/.cache/resnetlab, "
                                      "/usr/share/datasets)")
    q.add_argument("--json", action="store_true", help="print JSON (name, found, path, searched)")
    q.set_defaults(run=cmd_list)

    q = data_sub.add_parser("fetch", help="download a known data set (md5-checked) unless already present")
    q.add_argument("name", help=f"one of: {', '.join(KNOWN_DATASETS)}")
    q.add_argument("--data-dir", help="download here (default: $RESNETLAB_DATA, else ~/.cache/resnetlab)")
    q.set_defaults(run=cmd_fetch)


def cmd_list(args) -> int:
    rows = list_sources(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14} {'status':<8} path")
    for r in rows:
        print(f"{r['name']:<14} {'found' if r['found'] else 'missing':<8} {r['path'] or '-'}")
    if not all(r["found"] for r in rows):
        print(f"looked in: {', '.join(rows[0]['searched'])}")
    return 0


def cmd_fetch(args) -> int:
    print(fetch(args.name, args.data_dir))
    return 0

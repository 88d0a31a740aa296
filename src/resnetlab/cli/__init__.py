"""The `resnetlab` command: thin wrappers that parse flags and call the Python API.

Each sub-module adds its sub-commands with `add_commands(subparsers)` and binds a handler via
`set_defaults(run=...)`. A ResnetlabError becomes one `error: ...` line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import ResnetlabError

# Sub-modules, in the order their commands appear in --help.
_MODULES = ["models", "data", "train", "reproduce", "predict", "export", "show", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetlab",
        description="Deep residual networks: build, train, reproduce the paper, ship.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv   # for commands that relaunch themselves (train --nproc)
    try:
        return args.run(args) or 0
    except ResnetlabError as e:
        if int(os.environ.get("RANK", "0")) == 0:   # under torchrun, one line from rank 0 only
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `resnetlab models | head`
        return 0

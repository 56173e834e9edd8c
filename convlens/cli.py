"""The ``convlens`` command."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from . import nn


def _info(args: argparse.Namespace) -> int:
    model = nn.load(args.model)
    print(f"{args.model}")
    if model.classes:
        print(f"classes: {', '.join(model.classes)}")
    dtypes = sorted({str(p.data.dtype) for p in model.parameters()}) or ["-"]
    print(f"dtype: {', '.join(dtypes)}\n")
    print(model.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlens", description="Convolutional neural networks from the math up."
    )
    parser.add_argument("--version", action="version", version=f"convlens {version('convlens')}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser(
        "info", help="show a saved model's layers, shapes and parameter counts"
    )
    info.add_argument("model", help="a .safetensors file written by Sequential.save")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"convlens: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m proxylab COMMAND``; heavy jobs run headless from here."""
from __future__ import annotations

import argparse
import sys

import torch

from . import __version__
from .config import device, quick_mode


def cmd_info(args: argparse.Namespace) -> int:
    """Print the versions, the device and the quick-mode flag."""
    print(f"proxylab {__version__}, torch {torch.__version__}, device {device()}, "
          f"quick mode {'on' if quick_mode() else 'off'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxylab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help=cmd_info.__doc__).set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2

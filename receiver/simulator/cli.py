"""`receiver simulator`: arguments and entry point (filled in by the simulator issue)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)


def run(args: argparse.Namespace) -> int:
    print("receiver simulator: not implemented yet", file=sys.stderr)
    return 2

"""`receiver version`: the version and the Python it runs on (what a bug report needs)."""

from __future__ import annotations

import argparse
import sys

from receiver import __version__
from receiver.cli.common import Subparsers, add_command
from receiver.cli.exit import OK


def register(subparsers: Subparsers) -> None:
    add_command(subparsers, "version", "print the version", _cmd_version)


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"receiver {__version__} (Python {sys.version.split()[0]})")
    return OK

"""`receiver config check [FILE]`: validate a settings file and the routes file it names
before deploying it; every error with file, key path and reason, never a secret."""

from __future__ import annotations

import argparse
import os
import sys

from receiver.cli.common import Subparsers, add_group
from receiver.cli.exit import ERROR, OK, USAGE


def register(subparsers: Subparsers) -> None:
    check = add_group(
        subparsers,
        "config",
        "validate configuration",
        _cmd_config_check,
        "config_command",
        [
            (
                "check",
                "validate a settings file (and its routes file); print every error",
                "Validate a settings file and the routes file it names. Prints every error "
                "with file, key path and reason; exits 1 if there is any. Never prints a secret.",
            )
        ],
    )["check"]
    check.add_argument("file", nargs="?", default=None, metavar="FILE")


def _cmd_config_check(args: argparse.Namespace) -> int:
    from receiver.config.files import ConfigError
    from receiver.config.loader import load_settings
    from receiver.routing.config import load_routes

    path = args.file or args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print(
            "receiver config check: give a config file (FILE, --config or RECEIVER_CONFIG)",
            file=sys.stderr,
        )
        return USAGE
    try:
        settings = load_settings(path, environ=os.environ)
        if settings.routes_file is not None:
            load_routes(settings.routes_file, [s.name for s in settings.sinks])
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return ERROR
    print(f"{path}: OK ({settings.summary()})")
    for warning in settings.warnings():
        print(f"{path}: warning: {warning}")
    return OK

"""The `receiver` command: one entry point for every role and every operator task.

This package is the only place that knows every role. Each command group is one module that
adds its own subcommands (``register``) with their handlers; the handlers import what they
need when they run, so `receiver --help` and `receiver config check` stay fast and need no
Redis or Graph. Every command answers with the exit codes of :mod:`receiver.cli.exit` and
prints tables with :mod:`receiver.cli.table`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from receiver import __version__
from receiver.cli import (
    alerts,
    backfill,
    config,
    demo,
    dlq,
    roles,
    routes,
    securescore,
    simulator,
    sinks,
    status,
    subscriptions,
    tenants,
    version,
)
from receiver.cli.common import Handler
from receiver.cli.roles import web_app_from_environment

__all__ = ["build_parser", "main", "web_app_from_environment"]

# In the order `receiver --help` lists them.
COMMAND_GROUPS = (
    roles,
    simulator,
    demo,
    subscriptions,
    dlq,
    routes,
    status,
    backfill,
    alerts,
    tenants,
    securescore,
    config,
    sinks,
    version,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Microsoft Graph security alert receiver and router.",
    )
    parser.add_argument("--version", action="version", version=f"receiver {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `receiver` command: one entry point for every role and every operator task.

This is the only module that knows every role. Each subcommand imports what it needs when it
runs, so `receiver --help` and `receiver config check` stay fast and need no Redis or Graph.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from receiver import __version__

if TYPE_CHECKING:
    from receiver.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _not_implemented(what: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"receiver {what}: not implemented yet", file=sys.stderr)
        return EXIT_USAGE

    return handler


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"receiver {__version__} (Python {sys.version.split()[0]})")
    return EXIT_OK


def _cmd_config_check(args: argparse.Namespace) -> int:
    from receiver.configfile import ConfigError
    from receiver.routing.config import load_routes
    from receiver.settings import load_settings

    path = args.file or args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print("receiver config check: give a config file (FILE, --config or RECEIVER_CONFIG)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(path, environ=os.environ)
        if settings.routes_file is not None:
            load_routes(settings.routes_file, [s.name for s in settings.sinks])
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_ERROR
    print(f"{path}: OK ({settings.summary()})")
    return EXIT_OK


def _load(args: argparse.Namespace) -> Settings | None:
    """The settings for a role, or None after printing why they cannot be had."""
    from receiver.configfile import ConfigError
    from receiver.settings import load_settings

    path = args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print(f"receiver {args.command}: give a settings file with --config FILE or "
              "RECEIVER_CONFIG (see config/receiver.example.yaml)", file=sys.stderr)
        return None
    try:
        return load_settings(path, environ=os.environ)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def _cmd_web(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    import uvicorn

    from receiver.logs import setup_logging

    setup_logging(settings.logging.level, settings.logging.format)
    host = args.host or settings.web.host
    port = args.port or settings.web.port
    common: dict[str, Any] = {
        "host": host, "port": port, "loop": "uvloop", "http": "httptools",
        "access_log": False, "log_config": None, "timeout_keep_alive": 75,
        "limit_concurrency": args.limit_concurrency, "backlog": 4096,
    }
    if args.workers > 1:
        path = args.config or os.environ["RECEIVER_CONFIG"]
        os.environ["RECEIVER_CONFIG"] = os.path.abspath(path)
        uvicorn.run("receiver.web.app:app_from_environment", factory=True,
                    workers=args.workers, **common)
    else:
        from receiver.web.app import create_app

        uvicorn.run(create_app(settings), **common)
    return EXIT_OK


def _cmd_simulator(args: argparse.Namespace) -> int:
    from receiver.simulator import cli as simulator_cli

    return simulator_cli.run(args)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="settings YAML file (default: $RECEIVER_CONFIG)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Microsoft Graph security alert receiver and router.",
    )
    parser.add_argument("--version", action="version", version=f"receiver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    web = add("web", "run the webhook receiver: handshake, validation, durable 202", _cmd_web)
    _add_config_option(web)
    web.add_argument("--host", default=None, help="listen address (default: web.host)")
    web.add_argument("--port", type=int, default=None, help="listen port (default: web.port)")
    web.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    web.add_argument("--limit-concurrency", type=int, default=None,
                     help="answer 503 beyond this many concurrent connections per process")

    for name, text in (
        ("serve", "run every role (web, workers, scheduler) in one process"),
        ("worker", "run the pipeline workers: fetch, route, deliver"),
        ("scheduler", "run scheduled jobs (subscription renewal, poller) on the lease holder"),
    ):
        _add_config_option(add(name, text, _not_implemented(name)))

    sim = add("simulator", "run the Microsoft Graph / Entra ID simulator (HTTPS)", _cmd_simulator)
    from receiver.simulator import cli as simulator_cli

    simulator_cli.add_arguments(sim)

    add("demo", "run the demo: private Redis, simulator, receiver and a stream of alerts",
        _not_implemented("demo"))

    subs = add("subscriptions", "list, sync or delete Graph subscriptions",
               _not_implemented("subscriptions"))
    _add_config_option(subs)
    dlq = add("dlq", "list, show, replay or purge dead-lettered deliveries",
              _not_implemented("dlq"))
    _add_config_option(dlq)
    route = add("route", "test the routing tree against an alert", _not_implemented("route"))
    _add_config_option(route)

    config = add("config", "validate configuration", _not_implemented("config"))
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_sub.required = True
    check = config_sub.add_parser(
        "check",
        help="validate a settings file (and its routes file); print every error",
        description="Validate a settings file and the routes file it names. Prints every "
        "error with file, key path and reason; exits 1 if there is any. Never prints a secret.",
    )
    check.add_argument("file", nargs="?", default=None, metavar="FILE")
    _add_config_option(check)
    check.set_defaults(handler=_cmd_config_check)

    add("version", "print the version", _cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

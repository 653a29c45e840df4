"""What every command module of the CLI shares: adding a command and its actions to the
parser, loading the settings a command names, and running an operator command against the
deployment's Redis.

Only the standard library is imported here at module level: the parser is built from every
command module on each run, so `receiver --help` stays fast and needs no Redis or Graph.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from receiver.cli.exit import ERROR

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings, TenantSettings

Handler: TypeAlias = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
RedisCommand: TypeAlias = "Callable[[Settings, Redis, argparse.Namespace], Awaitable[int]]"
OptionalRedisCommand: TypeAlias = (
    "Callable[[Settings, Redis | None, argparse.Namespace], Awaitable[int]]"
)

CONFIG_HELP = "settings YAML file (default: $RECEIVER_CONFIG)"


def add_command(
    subparsers: Subparsers, name: str, help_text: str, handler: Handler
) -> argparse.ArgumentParser:
    """A subcommand whose help and description are ``help_text``, run by ``handler``."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None, help=CONFIG_HELP)


def add_actions(
    parser: argparse.ArgumentParser,
    dest: str,
    handler: Handler | None,
    specs: Sequence[tuple[str, str] | tuple[str, str, str]],
) -> dict[str, argparse.ArgumentParser]:
    """A command's required ACTION: one subparser per (name, help[, description]) in
    ``specs`` (the description is the help unless given), each taking ``--config`` after the
    action too (without overriding one given before it)."""
    sub_parsers = parser.add_subparsers(dest=dest, metavar="ACTION")
    sub_parsers.required = True
    out = {}
    for action, text, *description in specs:
        p = sub_parsers.add_parser(action, help=text, description=(description or [text])[0])
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
        if handler is not None:
            p.set_defaults(handler=handler)
        out[action] = p
    return out


def add_group(
    subparsers: Subparsers,
    name: str,
    help_text: str,
    handler: Handler,
    dest: str,
    specs: Sequence[tuple[str, str] | tuple[str, str, str]],
) -> dict[str, argparse.ArgumentParser]:
    """A command that takes ``--config`` and a required ACTION (:func:`add_actions`), each
    action run by ``handler`` unless it sets its own; the actions' parsers by name."""
    parser = add_command(subparsers, name, help_text, handler)
    add_config_option(parser)
    return add_actions(parser, dest, handler, specs)


def redis_unavailable(what: str, settings: Settings, exc: BaseException) -> int:
    """Say that the deployment's Redis cannot be reached (exit code 1)."""
    print(
        f"{what}: Redis at {settings.redis.url} unavailable: {type(exc).__name__}: {exc}",
        file=sys.stderr,
    )
    return ERROR


def load_settings(args: argparse.Namespace) -> Settings | None:
    """The settings named by ``--config`` or RECEIVER_CONFIG, or None after printing why they
    cannot be had (every problem, with file and key, never a secret)."""
    from receiver.config.files import ConfigError
    from receiver.config.loader import load_settings as load

    path = args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print(
            f"receiver {args.command}: give a settings file with --config FILE or "
            "RECEIVER_CONFIG (see config/receiver.example.yaml)",
            file=sys.stderr,
        )
        return None
    try:
        return load(path, environ=os.environ)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def pick_tenant(settings: Settings, name_or_id: str | None) -> TenantSettings | str:
    """The tenant a command names, by :meth:`Settings.find_tenant` (an id as a GUID in any
    case, a name in any case); the only one when none is named and one is configured. Else
    why not, in the operator's words (the command prints it and picks its exit code)."""
    names = ", ".join(t.name for t in settings.tenants) or "none"
    if name_or_id is None:
        if len(settings.tenants) == 1:
            return settings.tenants[0]
        return f"name the tenant with --tenant (configured: {names})"
    found = settings.find_tenant(name_or_id)
    if found is None:
        return f"no tenant {name_or_id!r} in the settings (configured: {names})"
    return found


def quiet_logging() -> None:
    """Only warnings reach the terminal: for commands whose own output is the answer."""
    from receiver.logs import setup_logging

    setup_logging("WARNING", "text")


def redis_command(command: RedisCommand, *, quiet_logs: bool = False) -> Handler:
    """A handler for an operator command ``command(settings, redis, args)`` that needs the
    deployment's Redis (exit 1 with the reason when it is unreachable)."""
    return _with_redis(command, needs_redis=True, quiet_logs=quiet_logs)


def optional_redis_command(command: OptionalRedisCommand, *, quiet_logs: bool = False) -> Handler:
    """As :func:`redis_command`, with ``redis`` None when Redis is unreachable (the command
    still answers, with what it can tell without it)."""
    return _with_redis(command, needs_redis=False, quiet_logs=quiet_logs)


def _with_redis(
    command: Callable[..., Awaitable[int]], *, needs_redis: bool, quiet_logs: bool
) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        import asyncio

        from redis.exceptions import RedisError

        from receiver.store.client import make_redis

        settings = load_settings(args)
        if settings is None:
            return ERROR
        if quiet_logs:
            quiet_logging()

        async def run() -> int:
            redis = make_redis(settings.redis)
            try:
                connected: Any = redis
                if not needs_redis:
                    try:
                        await redis.ping()
                    except (RedisError, OSError):
                        connected = None
                return int(await command(settings, connected, args))
            finally:
                await redis.aclose()

        try:
            return asyncio.run(run())
        except (RedisError, OSError) as exc:
            return redis_unavailable(f"receiver {args.command}", settings, exc)

    return handler

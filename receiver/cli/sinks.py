"""`receiver sinks test NAME`: send a sample alert through one configured sink and report
the result (exit 1 with the classified error: retryable or permanent), so a new sink's
credentials and address are proven before the first real alert needs them."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from receiver.cli.common import Subparsers, add_group, load_settings
from receiver.cli.exit import ERROR, OK

if TYPE_CHECKING:
    from receiver.config.settings import Settings


def register(subparsers: Subparsers) -> None:
    test = add_group(
        subparsers,
        "sinks",
        "work with the configured sinks",
        _cmd_sinks_test,
        "sinks_command",
        [
            (
                "test",
                "send a sample alert through one configured sink and report the result",
                "Send a sample alert through one configured sink. Exits 0 on success, 1 on "
                "failure (with the classified error: retryable or permanent).",
            )
        ],
    )["test"]
    test.add_argument("name", metavar="NAME", help="the sink's name in the settings")


def _cmd_sinks_test(args: argparse.Namespace) -> int:
    import asyncio

    settings = load_settings(args)
    if settings is None:
        return ERROR
    names = [s.name for s in settings.sinks]
    if args.name not in names:
        print(
            f"receiver sinks test: no sink named {args.name!r} "
            f"(configured: {', '.join(names) or 'none'})",
            file=sys.stderr,
        )
        return ERROR
    ok, text = asyncio.run(_sinks_test(settings, args.name))
    if ok:
        print(f"sink {args.name}: OK: {text}")
        return OK
    print(f"sink {args.name}: FAILED ({text})", file=sys.stderr)
    return ERROR


async def _sinks_test(settings: Settings, name: str) -> tuple[bool, str]:
    from receiver.pipeline.tickets import RedisTicketStore
    from receiver.sinks.sample import send_sample
    from receiver.store.client import make_redis
    from receiver.store.keys import Keys

    config = next(s for s in settings.sinks if s.name == name)
    if config.type not in ("jira", "servicenow"):
        return await send_sample(config)
    redis = make_redis(settings.redis)  # one Redis or a cluster, like every role
    try:
        return await send_sample(
            config, tickets=RedisTicketStore(redis, Keys(settings.redis.key_prefix))
        )
    finally:
        await redis.aclose()

"""`receiver dlq list|show|replay|purge`: the dead-letter streams, one per sink, where every
delivery that ran out of attempts waits for a human (nothing is dropped silently)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from receiver.cli.common import (
    Subparsers,
    add_group,
    redis_command,
)
from receiver.cli.exit import ERROR, OK
from receiver.cli.table import table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings
    from receiver.store.keys import Keys


def register(subparsers: Subparsers) -> None:
    actions = add_group(
        subparsers,
        "dlq",
        "list, show, replay or purge dead-lettered deliveries",
        redis_command(dlq),
        "dlq_command",
        [
            ("list", "dead-lettered deliveries of every sink (or --sink)"),
            ("show", "one dead-lettered delivery with its alert and error"),
            ("replay", "put dead-lettered deliveries back in their sink's queue"),
            ("purge", "delete dead-lettered deliveries"),
        ],
    )
    for action, p in actions.items():
        p.add_argument("--sink", default=None, help="only this sink")
        if action == "show":
            p.add_argument("id", metavar="ENTRY", help="the entry id (from dlq list)")
        if action == "replay":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--all", action="store_true", help="every entry")
            which.add_argument("--id", default=None, help="one entry")
            which.add_argument(
                "--since",
                default=None,
                metavar="DURATION",
                help="entries dead-lettered in the last DURATION (e.g. 2h)",
            )
        if action == "purge":
            p.add_argument(
                "--yes",
                action="store_true",
                required=True,
                help="confirm: the deliveries are gone for good",
            )


async def dlq(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    from receiver.store.keys import Keys

    keys = Keys(settings.redis.key_prefix)
    names = [s.name for s in settings.sinks]
    sinks = [args.sink] if getattr(args, "sink", None) else names
    unknown = [s for s in sinks if s not in names]
    if unknown:
        print(
            f"receiver dlq: unknown sink {unknown[0]!r} (sinks: {', '.join(names)})",
            file=sys.stderr,
        )
        return ERROR
    action = args.dlq_command
    if action == "list":
        return await _list(redis, keys, sinks)
    if action == "show":
        return await _show(redis, keys, sinks, args.id)
    if action == "replay":
        return await _replay(redis, keys, sinks, args)
    total = 0  # purge
    for sink in sinks:
        total += int(await redis.xlen(keys.dlq(sink)))
        await redis.delete(keys.dlq(sink))
    print(f"{total} dead-lettered deliveries purged")
    return OK


async def _list(redis: Redis, keys: Keys, sinks: list[str]) -> int:
    from receiver.pipeline.deliver import describe_dlq_entry

    rows = []
    for sink in sinks:
        entries: Any = await redis.xrange(keys.dlq(sink))
        for entry_id, fields in entries:
            d = describe_dlq_entry(entry_id, fields)
            rows.append([sink, d["id"], d["alert"], d["reason"], d["attempts"], d["error"][:60]])
    print(
        table(rows, ["sink", "entry", "alert", "reason", "attempts", "error"])
        if rows
        else "the dead-letter streams are empty"
    )
    return OK


async def _show(redis: Redis, keys: Keys, sinks: list[str], entry: str) -> int:
    from receiver.pipeline.deliver import describe_dlq_entry
    from receiver.store.entries import AlertEntry

    for sink in sinks:
        found: Any = await redis.xrange(keys.dlq(sink), entry, entry)
        for entry_id, fields in found:
            out: dict[str, Any] = describe_dlq_entry(entry_id, fields)
            out["envelope"] = json.loads(AlertEntry.of(fields).envelope or b"{}")
            out["sink"] = sink
            print(json.dumps(out, indent=2))
            return OK
    print(f"receiver dlq show: no entry {entry}", file=sys.stderr)
    return ERROR


async def _replay(redis: Redis, keys: Keys, sinks: list[str], args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from receiver.cli.progress import Progress
    from receiver.pipeline.deliver import replay
    from receiver.routing.config import parse_duration

    since_ms = None
    if args.since:
        since_ms = int(
            (datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))).timestamp() * 1000
        )
    total = 0
    # All of them: the DLQ sizes are the total; --since: unknown until read.
    size = sum([int(await redis.xlen(keys.dlq(s))) for s in sinks]) if args.all else None
    with Progress("dlq replay", 1 if args.id else size) as progress:
        for sink in sinks:
            ids = [args.id] if args.id else None
            moved = await replay(
                redis, keys, sink, entry_ids=ids, since_ms=since_ms, on_moved=progress.advance
            )
            if moved:
                print(f"{sink}: {moved} replayed")
            total += moved
    print(f"{total} deliveries back in their queues")
    return OK

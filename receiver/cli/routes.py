"""`receiver route test` (which sinks would get an alert, and why) and `receiver silence
add|list|expire` (time-bounded mutes): the routing tree as an operator checks and bends it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from receiver.cli.common import (
    Subparsers,
    add_group,
    optional_redis_command,
    redis_command,
)
from receiver.cli.exit import ERROR, OK
from receiver.cli.table import table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings
    from receiver.envelope import Envelope


def register(subparsers: Subparsers) -> None:
    add_group(
        subparsers,
        "route",
        "test the routing tree against an alert",
        optional_redis_command(route_test),
        "route_command",
        [
            (
                "test",
                "which sinks would get ALERT.json (an envelope or an alert as Graph returns "
                "it), and why; silences are checked when Redis is reachable",
            )
        ],
    )["test"].add_argument("alert", metavar="ALERT.json")

    actions = add_group(
        subparsers,
        "silence",
        "add, list or expire silences (time-bounded mutes)",
        redis_command(silence),
        "silence_command",
        [
            ("add", "mute alerts matching every MATCHER for DURATION"),
            ("list", "every silence, active or expired"),
            ("expire", "end a silence now"),
        ],
    )
    add = actions["add"]
    add.add_argument(
        "matchers",
        nargs="+",
        metavar="MATCHER",
        help="e.g. 'tenant=\"contoso\"' 'severity=~\"low\"'",
    )
    add.add_argument("--duration", default="2h", help="e.g. 30m, 2h, 1h30m")
    add.add_argument("--comment", required=True, help="why, and whom to ask")
    add.add_argument("--author", default=os.environ.get("USER", ""))
    actions["expire"].add_argument("id", metavar="ID")


def envelope_from_file(path: str, settings: Settings) -> Envelope:
    """An envelope from a JSON file: an envelope, or an alert as Graph returns it (legacy,
    alerts_v2 or incident)."""
    from receiver.envelope import Envelope, from_incident, from_legacy, from_v2

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("value"), list):
        # A collection page as Graph answers a list (the docs' examples are such pages).
        items = data["value"]
        if len(items) != 1 or not isinstance(items[0], dict):
            raise ValueError(
                f"the file is a collection page of {len(items)} items: keep the one to test"
            )
        data = items[0]
    if not isinstance(data, dict):
        raise ValueError("the file must hold one JSON object")
    if "source_api" in data:
        return Envelope.from_dict(data)
    tenant_id = str(data.get("tenantId") or data.get("azureTenantId") or "").lower()
    tenant = settings.tenant(tenant_id)
    name = tenant.name if tenant else ""
    odata_type = str(data.get("@odata.type") or "").lstrip("#").lower()
    if odata_type == "microsoft.graph.security.incident":
        return from_incident(data, name)
    if odata_type == "microsoft.graph.security.alert":
        return from_v2(data, name)
    if (
        odata_type == "microsoft.graph.alert"
        or "azureTenantId" in data
        or "vendorInformation" in data
    ):
        return from_legacy(data, name)
    if "displayName" in data and "incidentWebUrl" in data:
        return from_incident(data, name)
    return from_v2(data, name)


async def route_test(settings: Settings, redis: Redis | None, args: argparse.Namespace) -> int:
    from receiver import clock
    from receiver.config.files import ConfigError
    from receiver.pipeline.route import load_silences
    from receiver.routing.config import load_routes
    from receiver.routing.grouping import group_labels
    from receiver.routing.silences import silenced_by
    from receiver.routing.tree import Trace, route
    from receiver.store.keys import Keys

    if settings.routes_file is None:
        print("receiver route test: the settings name no routes_file", file=sys.stderr)
        return ERROR
    try:
        routes = load_routes(settings.routes_file, [s.name for s in settings.sinks])
        envelope = envelope_from_file(args.alert, settings)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return ERROR
    except (OSError, ValueError) as exc:
        print(f"receiver route test: {args.alert}: {exc}", file=sys.stderr)
        return ERROR
    trace = Trace()
    decisions = route(routes.route, envelope, trace)
    print(
        f"{envelope.kind} {envelope.id} ({envelope.severity}, {envelope.status}, "
        f"provider {envelope.provider or '-'}, tenant {envelope.tenant or envelope.tenant_id})"
    )
    print("\n".join(trace.lines))
    if redis is not None:
        silence = silenced_by(
            envelope, await load_silences(redis, Keys(settings.redis.key_prefix)), clock.now()
        )
        if silence is not None:
            print(
                f"SILENCED by {silence.id} until {silence.ends_at.isoformat()}: {silence.comment}"
            )
            return OK
    if not decisions:
        print("no sink would get it")
    for d in decisions:
        grouping = ""
        if d.grouped:
            labels = ", ".join(f"{k}={v!r}" for k, v in group_labels(d.group_by, envelope).items())
            grouping = (
                f", grouped by {labels}: first message after {d.group_wait_s:g}s, "
                f"changes every {d.group_interval_s:g}s"
                + (f", reminders every {d.repeat_interval_s:g}s" if d.repeat_interval_s else "")
            )
        print(f"-> {d.sink} (via {d.route}{grouping})")
    return OK


async def silence(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from receiver import clock
    from receiver.pipeline.route import expire_silence, load_silences, save_silence
    from receiver.routing.config import parse_duration
    from receiver.routing.silences import Silence
    from receiver.store.keys import Keys

    keys = Keys(settings.redis.key_prefix)
    action = args.silence_command
    if action == "add":
        try:
            ends = clock.now() + timedelta(seconds=parse_duration(args.duration))
            new = Silence.new(args.matchers, ends, args.comment, created_by=args.author)
        except ValueError as exc:
            print(f"receiver silence add: {exc}", file=sys.stderr)
            return ERROR
        await save_silence(redis, keys, new)
        print(f"silence {new.id} until {new.ends_at.isoformat()}")
        return OK
    if action == "expire":
        if await expire_silence(redis, keys, args.id):
            print(f"silence {args.id} expired")
            return OK
        print(f"receiver silence expire: no silence {args.id}", file=sys.stderr)
        return ERROR
    now = clock.now()
    rows = [
        [
            s.id,
            " ".join(str(m) for m in s.matchers),
            s.ends_at.isoformat(timespec="seconds"),
            "active" if s.active(now) else "expired",
            s.comment,
        ]
        for s in await load_silences(redis, keys)
    ]
    print(table(rows, ["id", "matchers", "ends", "state", "comment"]) if rows else "no silences")
    return OK

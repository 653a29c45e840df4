"""Operator commands that work on a deployment's Redis: route test, silences, the dead-letter
streams and an alert's delivery timeline. Each takes the settings and parsed arguments and
returns an exit code; `receiver.cli` wires them to subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from receiver.configfile import ConfigError
from receiver.envelope import Envelope, from_incident, from_legacy, from_v2
from receiver.keys import Keys
from receiver.pipeline import records
from receiver.pipeline.deliver import describe_dlq_entry, replay
from receiver.pipeline.route import expire_silence, load_silences, save_silence
from receiver.routing.config import load_routes, parse_duration
from receiver.routing.grouping import group_labels
from receiver.routing.silences import Silence, silenced_by
from receiver.routing.tree import Trace, route
from receiver.settings import Settings

OK, ERROR = 0, 1


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def envelope_from_file(path: str, settings: Settings) -> Envelope:
    """An envelope from a JSON file: an envelope, or an alert as Graph returns it (legacy,
    alerts_v2 or incident)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the file must hold one JSON object")
    if "source_api" in data:
        return Envelope.from_dict(data)
    tenant_id = str(data.get("tenantId") or data.get("azureTenantId") or "").lower()
    tenant = settings.tenant(tenant_id)
    name = tenant.name if tenant else ""
    if "azureTenantId" in data or "vendorInformation" in data:
        return from_legacy(data, name)
    if "displayName" in data and "incidentWebUrl" in data:
        return from_incident(data, name)
    return from_v2(data, name)


async def route_test(settings: Settings, redis: Redis | None, args: argparse.Namespace) -> int:
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
    print(f"alert {envelope.id} ({envelope.severity}, {envelope.status}, "
          f"provider {envelope.provider or '-'}, tenant {envelope.tenant or envelope.tenant_id})")
    print("\n".join(trace.lines))
    if redis is not None:
        silence = silenced_by(envelope, await load_silences(redis, Keys(
            settings.redis.key_prefix)), datetime.now(UTC))
        if silence is not None:
            print(f"SILENCED by {silence.id} until {silence.ends_at.isoformat()}: "
                  f"{silence.comment}")
            return OK
    if not decisions:
        print("no sink would get it")
    for d in decisions:
        grouping = ""
        if d.grouped:
            labels = ", ".join(f"{k}={v!r}" for k, v in group_labels(d.group_by, envelope).items())
            grouping = (f", grouped by {labels}: first message after {d.group_wait_s:g}s, "
                        f"changes every {d.group_interval_s:g}s"
                        + (f", reminders every {d.repeat_interval_s:g}s"
                           if d.repeat_interval_s else ""))
        print(f"-> {d.sink} (via {d.route}{grouping})")
    return OK


async def silence(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    keys = Keys(settings.redis.key_prefix)
    action = args.silence_command
    if action == "add":
        try:
            ends = datetime.now(UTC) + timedelta(seconds=parse_duration(args.duration))
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
    now = datetime.now(UTC)
    rows = [[s.id, " ".join(str(m) for m in s.matchers), s.ends_at.isoformat(timespec="seconds"),
             "active" if s.active(now) else "expired", s.comment]
            for s in await load_silences(redis, keys)]
    print(_table(rows, ["id", "matchers", "ends", "state", "comment"]) if rows
          else "no silences")
    return OK


async def dlq(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    keys = Keys(settings.redis.key_prefix)
    names = [s.name for s in settings.sinks]
    sinks = [args.sink] if getattr(args, "sink", None) else names
    unknown = [s for s in sinks if s not in names]
    if unknown:
        print(f"receiver dlq: unknown sink {unknown[0]!r} (sinks: {', '.join(names)})",
              file=sys.stderr)
        return ERROR
    action = args.dlq_command
    if action == "list":
        rows = []
        for sink in sinks:
            entries: Any = await redis.xrange(keys.dlq(sink))
            for entry_id, fields in entries:
                d = describe_dlq_entry(entry_id, fields)
                rows.append([sink, d["id"], d["alert"], d["reason"], d["attempts"],
                             d["error"][:60]])
        print(_table(rows, ["sink", "entry", "alert", "reason", "attempts", "error"]) if rows
              else "the dead-letter streams are empty")
        return OK
    if action == "show":
        for sink in sinks:
            found: Any = await redis.xrange(keys.dlq(sink), args.id, args.id)
            for entry_id, fields in found:
                out: dict[str, Any] = describe_dlq_entry(entry_id, fields)
                out["envelope"] = json.loads(fields.get(b"e", b"{}"))
                out["sink"] = sink
                print(json.dumps(out, indent=2))
                return OK
        print(f"receiver dlq show: no entry {args.id}", file=sys.stderr)
        return ERROR
    if action == "replay":
        since_ms = None
        if args.since:
            since_ms = int((datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
                            ).timestamp() * 1000)
        total = 0
        for sink in sinks:
            ids = [args.id] if args.id else None
            moved = await replay(redis, keys, sink, entry_ids=ids, since_ms=since_ms)
            if moved:
                print(f"{sink}: {moved} replayed")
            total += moved
        print(f"{total} deliveries back in their queues")
        return OK
    # purge
    total = 0
    for sink in sinks:
        total += int(await redis.xlen(keys.dlq(sink)))
        await redis.delete(keys.dlq(sink))
    print(f"{total} dead-lettered deliveries purged")
    return OK


async def alert_show(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    keys = Keys(settings.redis.key_prefix)
    tenants = [t for t in settings.tenants if args.tenant in (None, t.name, t.tenant_id)]
    found = False
    for tenant in tenants:
        events = await records.timeline(redis, keys, tenant.tenant_id, args.id)
        if not events:
            continue
        found = True
        print(f"alert {args.id} (tenant {tenant.name})")
        for e in events:
            at = datetime.fromtimestamp(e.pop("at"), UTC).isoformat(timespec="milliseconds")
            kind = e.pop("event")
            rest = " ".join(f"{k}={v}" for k, v in e.items())
            print(f"  {at}  {kind:<14} {rest}")
    if not found:
        print(f"receiver alerts show: no delivery record for {args.id}", file=sys.stderr)
        return ERROR
    return OK


async def _stream_backlog(redis: Redis, stream: str, group: str, delayed_key: str
                          ) -> tuple[int, int, int]:
    unread = pending = 0
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except Exception:  # no stream yet
        groups = []
    for g in groups:
        if g["name"].decode() == group:
            unread, pending = int(g.get("lag") or 0), int(g.get("pending") or 0)
    return unread, pending, int(await redis.zcard(delayed_key))


async def status(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    """The health summary: processes alive, subscriptions, backlog per stage, DLQ sizes."""
    import time

    from receiver import registry

    keys = Keys(settings.redis.key_prefix)
    now = time.time()
    healthy = True
    alive: list[list[str]] = []
    async for key in redis.scan_iter(match=f"{settings.redis.key_prefix}:health:*", count=500):
        raw = await redis.get(key)
        if raw:
            data = json.loads(raw)
            role, instance = key.decode().split(":health:", 1)[1].split(":", 1)
            alive.append([role, instance, data.get("stream", ""),
                          f"{now - float(data.get('at', now)):.0f}s ago"])
    print("processes (heartbeat within their TTL):")
    print(_table(sorted(alive), ["role", "instance", "stream", "seen"]) if alive
          else "  none: no worker is running")
    leader: Any = await redis.get(keys.leader)
    holder = leader.decode() if isinstance(leader, bytes) else leader
    print(f"scheduler lease: {'held by ' + holder if holder else 'FREE (no scheduler)'}")
    healthy &= bool(alive) and bool(leader)

    _, records = await registry.load_all(redis, keys)
    names = {t.tenant_id: t.name for t in settings.tenants}
    rows = []
    for r in sorted(records.values(), key=lambda r: r.expires_at):
        left = r.expires_at - now
        state = "EXPIRED" if left <= 0 else ("expiring" if left < 24 * 3600 else "ok")
        healthy &= left > 0
        rows.append([names.get(r.tenant_id, r.tenant_id), r.resource, r.subscription_id,
                     f"{left / 3600:.1f}h", state])
    print("\nsubscriptions:")
    print(_table(rows, ["tenant", "resource", "id", "expires in", "state"]) if rows
          else "  none registered")
    wanted = sum(len(t.subscriptions) for t in settings.tenants)
    if wanted > len(records):
        healthy = False
        print(f"  {wanted - len(records)} wanted subscription(s) missing")

    stages = [(keys.notifications, "fetch"), (keys.alerts, "route"),
              *((keys.sink(s.name), "deliver") for s in settings.sinks)]
    rows = []
    for stream, group in stages:
        unread, pending, delayed = await _stream_backlog(redis, stream, group,
                                                         keys.delayed(stream))
        rows.append([stream.removeprefix(settings.redis.key_prefix + ":stream:"), group,
                     str(unread), str(pending), str(delayed)])
    print("\nbacklog:")
    print(_table(rows, ["stream", "stage", "unread", "pending", "delayed"]))
    rows = [[s.name, str(await redis.xlen(keys.dlq(s.name)))] for s in settings.sinks]
    poisoned = int(await redis.xlen(keys.poison))
    print("\ndead letters:")
    print(_table([*rows, ["(poison stream)", str(poisoned)]], ["sink", "entries"]))
    print(f"\noverall: {'OK' if healthy else 'ATTENTION NEEDED'}")
    return OK if healthy else ERROR

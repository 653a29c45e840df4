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

from receiver import clock
from receiver.cli.progress import Progress
from receiver.config.files import ConfigError
from receiver.config.settings import Settings
from receiver.envelope import Envelope, from_incident, from_legacy, from_v2
from receiver.pipeline import records
from receiver.pipeline.deliver import describe_dlq_entry, replay
from receiver.pipeline.route import expire_silence, load_silences, save_silence
from receiver.routing.config import load_routes, parse_duration
from receiver.routing.grouping import group_labels
from receiver.routing.silences import Silence, silenced_by
from receiver.routing.tree import Trace, route
from receiver.store.keys import Keys

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
    if isinstance(data, dict) and isinstance(data.get("value"), list):
        # A collection page as Graph answers a list (the docs' examples are such pages).
        items = data["value"]
        if len(items) != 1 or not isinstance(items[0], dict):
            raise ValueError(f"the file is a collection page of {len(items)} items: "
                             "keep the one to test")
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
    if (odata_type == "microsoft.graph.alert" or "azureTenantId" in data
            or "vendorInformation" in data):
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
    print(f"{envelope.kind} {envelope.id} ({envelope.severity}, {envelope.status}, "
          f"provider {envelope.provider or '-'}, tenant {envelope.tenant or envelope.tenant_id})")
    print("\n".join(trace.lines))
    if redis is not None:
        silence = silenced_by(envelope, await load_silences(redis, Keys(
            settings.redis.key_prefix)), clock.now())
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
        # All of them: the DLQ sizes are the total; --since: unknown until read.
        size = sum([int(await redis.xlen(keys.dlq(s))) for s in sinks]) if args.all else None
        with Progress("dlq replay", 1 if args.id else size) as progress:
            for sink in sinks:
                ids = [args.id] if args.id else None
                moved = await replay(redis, keys, sink, entry_ids=ids, since_ms=since_ms,
                                     on_moved=progress.advance)
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


async def status(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    """The health summary: processes alive, subscriptions, backlog per stage, DLQ sizes (the
    status page shows the same, from :func:`receiver.admin.health.gather`)."""
    from receiver.admin.health import gather

    health = await gather(settings, redis)
    print("processes (heartbeat within their TTL):")
    alive = [[p.role, p.instance, p.stream, f"{p.seen_s_ago:.0f}s ago"]
             for p in health.processes]
    print(_table(alive, ["role", "instance", "stream", "seen"]) if alive
          else "  none: no worker is running")
    print(f"scheduler lease: "
          f"{'held by ' + health.leader if health.leader else 'FREE (no scheduler)'}")
    rows = [[s.tenant, s.resource, s.subscription_id, f"{s.expires_in_s / 3600:.1f}h",
             s.state] for s in health.subscriptions]
    print("\nsubscriptions:")
    print(_table(rows, ["tenant", "resource", "id", "expires in", "state"]) if rows
          else "  none registered")
    if health.missing_subscriptions:
        print(f"  {health.missing_subscriptions} wanted subscription(s) missing")
    rows = [[st.stream, st.stage, str(st.unread), str(st.pending), str(st.delayed),
             "-" if st.oldest_s is None else f"{st.oldest_s:.0f}s"] for st in health.stages]
    print("\nbacklog:")
    print(_table(rows, ["stream", "stage", "unread", "pending", "delayed", "oldest"]))
    rows = [[s.name, str(s.dead_letters)] for s in health.sinks]
    print("\ndead letters:")
    print(_table([*rows, ["(poison stream)", str(health.poisoned)]], ["sink", "entries"]))
    print(f"\noverall: {'OK' if health.healthy else 'ATTENTION NEEDED'}")
    for problem in health.problems:
        print(f"  {problem}")
    return OK if health.healthy else ERROR


def _backfill_since(args: argparse.Namespace, settings: Settings) -> datetime:
    """When a backfill starts: --since (ISO 8601), --hours, or the scheduler's lookback."""
    now = clock.now()
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--since {args.since!r} is not an ISO 8601 time "
                             "(e.g. 2026-01-31T08:00:00Z)") from None
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    elif args.hours is not None:
        if not 0 < args.hours <= 30 * 24:
            raise ValueError("--hours must be more than 0 and at most 720 (30 days)")
        since = now - timedelta(hours=args.hours)
    else:
        since = now - timedelta(seconds=settings.scheduler.backfill_lookback_s)
    if since >= now:
        raise ValueError(f"--since {since.isoformat()} is not in the past")
    return since


async def backfill(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    """Re-read one tenant's alerts changed since a time into the pipeline, now (the poller's
    backfill, as the scheduler runs it after a `missed` lifecycle event)."""
    from receiver.graph.auth import GraphAuthError
    from receiver.graph.client import GraphError, client_for
    from receiver.graph.poller import Poller
    from receiver.store.entries import BackfillRequest

    tenant = next((t for t in settings.tenants if args.tenant in (t.name, t.tenant_id)), None)
    if tenant is None:
        print(f"receiver backfill: no tenant {args.tenant!r} (tenants: "
              f"{', '.join(t.name for t in settings.tenants) or 'none'})", file=sys.stderr)
        return ERROR
    try:
        since = _backfill_since(args, settings)
    except ValueError as exc:
        print(f"receiver backfill: {exc}", file=sys.stderr)
        return ERROR
    graph = client_for(settings, redis)

    class _Counted:
        """The Graph client, counting the items the poller reads (the progress display)."""

        async def pages(self, tenant_id: str, path: str, params: dict[str, str] | None = None
                        ) -> Any:
            async for item in graph.pages(tenant_id, path, params):
                yield item
                progress.advance()

    request = BackfillRequest(tenant_id=tenant.tenant_id, reason="manual",
                              since=since.isoformat().replace("+00:00", "Z"),
                              requested_at=clock.now().isoformat().replace("+00:00", "Z"))
    try:
        with Progress(f"backfill {tenant.name}") as progress:
            count = await Poller(redis, Keys(settings.redis.key_prefix), settings,
                                 _Counted()).backfill(request)
    except (GraphError, GraphAuthError) as exc:
        print(f"receiver backfill: {exc}", file=sys.stderr)
        return ERROR
    finally:
        await graph.aclose()
    print(f"backfill {tenant.name}: {count} alert(s) and incident(s) changed since "
          f"{request.since} queued; "
          "the workers fetch and route them (duplicates of what was delivered are dropped)")
    return OK

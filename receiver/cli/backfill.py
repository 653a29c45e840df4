"""`receiver backfill TENANT [--since ISO | --hours N]`: re-read one tenant's alerts changed
since a time into the pipeline, now (the poller's backfill, as the scheduler runs it after a
`missed` lifecycle event), with progress on stderr."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from receiver.cli.common import (
    Subparsers,
    add_command,
    add_config_option,
    pick_tenant,
    redis_command,
)
from receiver.cli.exit import ERROR, OK

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "backfill",
        "re-read a tenant's alerts changed since a time into the pipeline now (progress on stderr)",
        redis_command(backfill),
    )
    add_config_option(parser)
    parser.add_argument("tenant", metavar="TENANT", help="tenant name or id")
    since = parser.add_mutually_exclusive_group()
    since.add_argument(
        "--since",
        default=None,
        metavar="ISO",
        help="changes from this time on, e.g. 2026-01-31T08:00:00Z",
    )
    since.add_argument(
        "--hours",
        type=float,
        default=None,
        metavar="N",
        help="changes in the last N hours (default: scheduler.backfill_lookback_s)",
    )


def backfill_since(args: argparse.Namespace, settings: Settings) -> datetime:
    """When a backfill starts: --since (ISO 8601), --hours, or the scheduler's lookback."""
    from receiver import clock

    now = clock.now()
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"--since {args.since!r} is not an ISO 8601 time (e.g. 2026-01-31T08:00:00Z)"
            ) from None
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
    from receiver import clock
    from receiver.cli.progress import Progress
    from receiver.graph.auth import GraphAuthError
    from receiver.graph.client import GraphError, client_for
    from receiver.graph.poller import Poller
    from receiver.store.entries import BackfillRequest
    from receiver.store.keys import Keys

    tenant = pick_tenant(settings, args.tenant)
    if isinstance(tenant, str):
        print(f"receiver backfill: {tenant}", file=sys.stderr)
        return ERROR
    try:
        since = backfill_since(args, settings)
    except ValueError as exc:
        print(f"receiver backfill: {exc}", file=sys.stderr)
        return ERROR
    graph = client_for(settings, redis)

    class _Counted:
        """The Graph client, counting the items the poller reads (the progress display)."""

        async def pages(
            self, tenant_id: str, path: str, params: dict[str, str] | None = None
        ) -> Any:
            async for item in graph.pages(tenant_id, path, params):
                yield item
                progress.advance()

    request = BackfillRequest(
        tenant_id=tenant.tenant_id,
        reason="manual",
        since=since.isoformat().replace("+00:00", "Z"),
        requested_at=clock.now().isoformat().replace("+00:00", "Z"),
    )
    try:
        with Progress(f"backfill {tenant.name}") as progress:
            count = await Poller(
                redis, Keys(settings.redis.key_prefix), settings, _Counted()
            ).backfill(request)
    except (GraphError, GraphAuthError) as exc:
        print(f"receiver backfill: {exc}", file=sys.stderr)
        return ERROR
    finally:
        await graph.aclose()
    print(
        f"backfill {tenant.name}: {count} alert(s) and incident(s) changed since "
        f"{request.since} queued; "
        "the workers fetch and route them (duplicates of what was delivered are dropped)"
    )
    return OK

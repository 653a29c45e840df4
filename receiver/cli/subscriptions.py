"""`receiver subscriptions list|sync|delete`: the Graph change-notification subscriptions of
every tenant, as the scheduler keeps them (sync takes the scheduler's lease, so it never
races a running scheduler)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from receiver.cli.common import (
    Subparsers,
    add_group,
    load_settings,
    quiet_logging,
    redis_unavailable,
)
from receiver.cli.exit import ERROR, OK
from receiver.cli.table import table

if TYPE_CHECKING:
    from receiver.config.settings import Settings


def register(subparsers: Subparsers) -> None:
    actions = add_group(
        subparsers,
        "subscriptions",
        "list, sync or delete Graph subscriptions",
        _cmd_subscriptions,
        "subs_command",
        [
            (
                "list",
                "table of every tenant's subscriptions: tenant, resource, id, expires in, state",
            ),
            ("sync", "reconcile now: create, renew and delete so Graph matches the settings"),
            (
                "delete",
                "delete subscriptions in Graph and the registry (the scheduler recreates "
                "wanted ones on its next reconcile)",
            ),
        ],
    )
    which = actions["delete"].add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--all",
        action="store_true",
        help="every subscription this deployment owns or that points at its notification URL",
    )
    which.add_argument("id", nargs="?", default=None, metavar="ID", help="one subscription id")


def expires_in(seconds: float | None) -> str:
    """A subscription's time left, as an operator reads it: `3d 04h 10m`, `2h 05m`."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "expired"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}h {rest // 60:02d}m" if days else f"{hours}h {rest // 60:02d}m"


def _cmd_subscriptions(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from receiver.graph.auth import GraphAuthError
    from receiver.graph.client import GraphError

    settings = load_settings(args)
    if settings is None:
        return ERROR
    quiet_logging()
    try:
        return asyncio.run(_subscriptions(settings, args))
    except (GraphError, GraphAuthError, RuntimeError) as exc:
        print(f"receiver subscriptions {args.subs_command}: {exc}", file=sys.stderr)
    except (RedisError, OSError) as exc:
        return redis_unavailable(f"receiver subscriptions {args.subs_command}", settings, exc)
    return ERROR


async def _subscriptions(settings: Settings, args: argparse.Namespace) -> int:
    from receiver.graph.client import client_for
    from receiver.graph.subscriptions import Supervisor
    from receiver.store.client import connect
    from receiver.store.keys import Keys
    from receiver.store.lease import Lease

    redis = await connect(settings.redis)
    graph = client_for(settings, redis)
    try:
        if args.subs_command == "list":
            rows = await Supervisor(settings, graph, redis).rows()
            print(
                table(
                    [
                        (
                            r.tenant,
                            r.resource,
                            r.subscription_id,
                            expires_in(r.expires_in_s),
                            r.state,
                        )
                        for r in rows
                    ],
                    ["TENANT", "RESOURCE", "ID", "EXPIRES IN", "STATE"],
                )
            )
            return OK
        if args.subs_command == "sync":
            lease = Lease(redis, Keys(settings.redis.key_prefix), settings.scheduler.lease_s)
            if not await lease.acquire():
                print(
                    f"receiver subscriptions sync: the scheduler lease is held by "
                    f"{await lease.holder()}; it reconciles every "
                    f"{settings.scheduler.reconcile_interval_s:g}s. Run sync when no "
                    "scheduler runs, or wait for it.",
                    file=sys.stderr,
                )
                return ERROR
            try:
                report = await Supervisor(settings, graph, redis, guard=lease).reconcile()
            finally:
                await lease.release()
            print(report.summary())
            for failure in report.failures:
                print(f"  error: {failure}", file=sys.stderr)
            return ERROR if report.errors else OK
        deleted = await Supervisor(settings, graph, redis).delete(None if args.all else args.id)
        print(f"{deleted} subscription(s) deleted")
        if not args.all and deleted == 0:
            print(
                f"receiver subscriptions delete: no subscription {args.id} in any tenant",
                file=sys.stderr,
            )
            return ERROR
        return OK
    finally:
        await graph.aclose()
        await redis.aclose()

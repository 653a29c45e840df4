"""`receiver status`: the health summary of a deployment (processes alive, subscriptions,
backlog per stage, dead letters), exit 1 when something needs attention, so it can gate a
deploy or page from cron. The status page shows the same, from
:func:`receiver.admin.health.gather`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from receiver.cli.common import Subparsers, add_command, add_config_option, redis_command
from receiver.cli.exit import ERROR, OK
from receiver.cli.table import table

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings


def register(subparsers: Subparsers) -> None:
    add_config_option(
        add_command(
            subparsers,
            "status",
            "the health summary: processes, subscriptions, backlog, dead "
            "letters (exit 1 when something needs attention)",
            redis_command(status),
        )
    )


async def status(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    from receiver.admin.health import gather

    health = await gather(settings, redis)
    print("processes (heartbeat within their TTL):")
    alive = [[p.role, p.instance, p.stream, f"{p.seen_s_ago:.0f}s ago"] for p in health.processes]
    print(
        table(alive, ["role", "instance", "stream", "seen"])
        if alive
        else "  none: no worker is running"
    )
    print(
        f"scheduler lease: {'held by ' + health.leader if health.leader else 'FREE (no scheduler)'}"
    )
    rows = [
        [s.tenant, s.resource, s.subscription_id, f"{s.expires_in_s / 3600:.1f}h", s.state]
        for s in health.subscriptions
    ]
    print("\nsubscriptions:")
    print(
        table(rows, ["tenant", "resource", "id", "expires in", "state"])
        if rows
        else "  none registered"
    )
    if health.missing_subscriptions:
        print(f"  {health.missing_subscriptions} wanted subscription(s) missing")
    rows = [
        [
            st.stream,
            st.stage,
            str(st.unread),
            str(st.pending),
            str(st.delayed),
            "-" if st.oldest_s is None else f"{st.oldest_s:.0f}s",
        ]
        for st in health.stages
    ]
    print("\nbacklog:")
    print(table(rows, ["stream", "stage", "unread", "pending", "delayed", "oldest"]))
    rows = [[s.name, str(s.dead_letters)] for s in health.sinks]
    print("\ndead letters:")
    print(table([*rows, ["(poison stream)", str(health.poisoned)]], ["sink", "entries"]))
    print(f"\noverall: {'OK' if health.healthy else 'ATTENTION NEEDED'}")
    for problem in health.problems:
        print(f"  {problem}")
    return OK if health.healthy else ERROR

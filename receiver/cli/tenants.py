"""`receiver tenants check [TENANT...] [--json]`: per tenant, whether it can work (credentials,
permissions, one read per feature and, with a subscription, the public endpoint), each failure
with its fix. The probes are :mod:`receiver.graph.probes`; this module picks the tenants,
prints the verdicts and records them for the status page when Redis is reachable."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from receiver.cli.common import (
    Subparsers,
    add_group,
    optional_redis_command,
    pick_tenant,
)
from receiver.cli.exit import ERROR, OK, USAGE

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from receiver.config.settings import Settings, TenantSettings


def register(subparsers: Subparsers) -> None:
    parser = add_group(
        subparsers,
        "tenants",
        "check that each configured tenant can work",
        optional_redis_command(check, quiet_logs=True),
        "tenants_command",
        [
            (
                "check",
                "per tenant: credentials, permissions, one read per feature and, with a "
                "subscription, the public endpoint; each failure with its fix (exit 1)",
            )
        ],
    )["check"]
    parser.add_argument(
        "tenants", nargs="*", metavar="TENANT", help="tenant names or ids (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="the verdicts as JSON, for automation")


def _select(settings: Settings, names: Sequence[str]) -> list[TenantSettings] | str:
    if not names:
        return list(settings.tenants)
    out = []
    for name in names:
        tenant = pick_tenant(settings, name)
        if isinstance(tenant, str):
            return tenant
        out.append(tenant)
    return out


async def check(settings: Settings, redis: Redis | None, args: argparse.Namespace) -> int:
    """Exit 0 when every checked tenant can work, 1 otherwise, 2 for a tenant that is not
    configured."""
    import asyncio

    from redis.exceptions import RedisError

    from receiver.graph.check import render
    from receiver.graph.probes import record, run
    from receiver.store.keys import Keys

    tenants = _select(settings, args.tenants)
    if isinstance(tenants, str):
        print(f"receiver tenants check: {tenants}", file=sys.stderr)
        return USAGE
    if not tenants:
        print(
            "receiver tenants check: no tenant is configured (tenants: in the settings; see "
            "README, Connect your tenant)",
            file=sys.stderr,
        )
        return ERROR
    reports = await run(settings, tenants)
    if args.json:
        print(
            json.dumps(
                {"ok": all(r.ok for r in reports), "tenants": [r.to_dict() for r in reports]},
                indent=2,
            )
        )
    else:
        print(render(reports))
    if redis is not None:
        try:
            await asyncio.wait_for(
                record(redis, Keys(settings.redis.key_prefix), reports, "cli"), 5.0
            )
        except (RedisError, OSError, TimeoutError) as exc:
            print(
                f"(not recorded for the status page: Redis {type(exc).__name__})", file=sys.stderr
            )
    return OK if all(r.ok for r in reports) else ERROR

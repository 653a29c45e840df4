"""`receiver alerts show ID` (an alert's delivery timeline: which sinks got it, when, with how
many attempts) and `receiver alerts update ID` (update an alert in Graph from the command line).

An update prints the alert as Graph holds it afterwards (read back), or Graph's refusal (HTTP
status, error code, message, request id) with exit code 1. It is audited like an action link
(``via: cli``, by the operating-system user) and queued for the pipeline, so the alert's
channels and tickets hear about it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from receiver.cli.common import (
    Subparsers,
    add_group,
    pick_tenant,
    redis_command,
)
from receiver.cli.exit import ERROR, OK, USAGE

if TYPE_CHECKING:  # imported when the command runs: `receiver --help` stays fast
    from redis.asyncio import Redis

    from receiver.actions.audit import AuditRecord
    from receiver.config.settings import Settings

SOURCES = {"auto": "auto", "v2": "alerts_v2", "legacy": "alerts_v1"}
_SHOWN = {
    "alerts_v2": ("status", "classification", "determination", "assignedTo"),
    "alerts_v1": ("status", "feedback", "assignedTo", "closedDateTime"),
}


def register(subparsers: Subparsers) -> None:
    actions = add_group(
        subparsers,
        "alerts",
        "an alert's delivery timeline",
        redis_command(alert_show),
        "alerts_command",
        [
            ("show", "which sinks got the alert, when, with how many attempts"),
            (
                "update",
                "update an alert in Graph (status, classification, determination, "
                "assignee, comment) and print it as read back",
            ),
        ],
    )
    actions["show"].add_argument("id", metavar="ID", help="the alert id")
    actions["show"].add_argument("--tenant", default=None, help="tenant name or id")
    update = actions["update"]
    update.set_defaults(handler=redis_command(alert_update, quiet_logs=True))
    update.add_argument("id", metavar="ID", help="the alert id (alerts_v2 or legacy)")
    update.add_argument(
        "--tenant", default=None, help="tenant name or id (needed when several are configured)"
    )
    update.add_argument(
        "--source",
        choices=sorted(SOURCES),
        default="auto",
        help="which API the id belongs to (default: try alerts_v2, then the legacy API)",
    )
    update.add_argument("--status", default=None, help="new, inProgress or resolved")
    update.add_argument(
        "--classification",
        default=None,
        help="truePositive, falsePositive, informationalExpectedActivity, "
        "unknown (legacy alerts: stored as feedback)",
    )
    update.add_argument(
        "--determination",
        default=None,
        help="e.g. malware, phishing, notMalicious (alerts_v2 only)",
    )
    update.add_argument("--assigned-to", default=None, help="who owns it (UPN or name)")
    update.add_argument("--comment", default=None, help="a comment to add")
    update.add_argument("--json", action="store_true", help="print the alert read back as JSON")


async def alert_show(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from receiver.pipeline import records
    from receiver.store.keys import Keys

    keys = Keys(settings.redis.key_prefix)
    tenants = list(settings.tenants)
    if args.tenant is not None:
        chosen = pick_tenant(settings, args.tenant)
        if isinstance(chosen, str):
            print(f"receiver alerts show: {chosen}", file=sys.stderr)
            return USAGE
        tenants = [chosen]
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


def _summary(source_api: str, alert: dict[str, Any]) -> list[str]:
    lines = [f"  title: {alert.get('title', '')}"]
    for name in _SHOWN.get(source_api, ()):
        lines.append(f"  {name}: {alert.get(name) if alert.get(name) is not None else '-'}")
    comments = alert.get("comments") or []
    if comments:
        last = comments[-1]
        text = last.get("comment", "") if isinstance(last, dict) else str(last)
        lines.append(f"  comments: {len(comments)} (latest: {text})")
    return lines


async def alert_update(settings: Settings, redis: Redis, args: argparse.Namespace) -> int:
    from receiver.actions import audit
    from receiver.actions.postback import queue_changed
    from receiver.actions.updates import (
        AlertNotFound,
        AlertUpdate,
        UpdateRefused,
        apply_update,
    )
    from receiver.graph.auth import GraphAuthError
    from receiver.graph.client import GraphError, client_for
    from receiver.store.keys import Keys

    update = AlertUpdate(
        status=args.status,
        classification=args.classification,
        determination=args.determination,
        assigned_to=args.assigned_to,
        comment=args.comment,
    )
    if update.is_empty():
        print(
            "receiver alerts update: give at least one of --status, --classification, "
            "--determination, --assigned-to, --comment",
            file=sys.stderr,
        )
        return USAGE
    chosen = pick_tenant(settings, args.tenant)
    if isinstance(chosen, str):
        print(f"receiver alerts update: {chosen}", file=sys.stderr)
        return USAGE
    tenant_id, tenant_name = chosen.tenant_id, chosen.name
    keys = Keys(settings.redis.key_prefix)
    who = audit.AuditRecord(
        action="update",
        outcome="",
        alert_id=args.id,
        tenant_id=tenant_id,
        via="cli",
        by=f"cli:{getpass.getuser()}",
        changes=update.describe(),
    )
    graph = client_for(settings, redis)
    try:
        try:
            applied = await apply_update(
                graph, tenant_id, args.id, update, source_api=SOURCES[args.source]
            )
        except UpdateRefused as exc:
            print(f"receiver alerts update: {exc}", file=sys.stderr)
            return ERROR
        except AlertNotFound:
            print(
                f"receiver alerts update: no alert {args.id} in tenant {tenant_name} "
                f"({'alerts_v2 or legacy' if args.source == 'auto' else args.source})",
                file=sys.stderr,
            )
            await audit.write(
                redis, keys, audit.AuditRecord(**{**_fields(who), "outcome": "not_found"})
            )
            return ERROR
        except GraphError as exc:
            print(
                f"receiver alerts update: Microsoft Graph refused the update: HTTP "
                f"{exc.status} {exc.code}: {exc.message}"
                + (f" (request-id {exc.request_id})" if exc.request_id else ""),
                file=sys.stderr,
            )
            await audit.write(
                redis,
                keys,
                audit.AuditRecord(
                    **{
                        **_fields(who),
                        "outcome": "graph_refused",
                        "request_id": exc.request_id,
                        "graph": f"{exc.status} {exc.code}: {exc.message}",
                    }
                ),
            )
            return ERROR
        except GraphAuthError as exc:
            print(f"receiver alerts update: no Graph token: {exc}", file=sys.stderr)
            return ERROR
    finally:
        await graph.aclose()
    await audit.write(
        redis,
        keys,
        audit.AuditRecord(
            **{
                **_fields(who),
                "outcome": "done",
                "source_api": applied.source_api,
                "graph": "updated"
                + (
                    f"; comment not added: {applied.comment_error}" if applied.comment_error else ""
                ),
            }
        ),
    )
    await queue_changed(redis, keys, tenant_id, applied.source_api, applied.after)
    if args.json:
        print(json.dumps(applied.after, indent=2, ensure_ascii=False))
    else:
        print(
            f"alert {args.id} updated (tenant {tenant_name}, {applied.source_api}); Graph now has:"
        )
        print("\n".join(_summary(applied.source_api, applied.after)))
    if applied.comment_error:
        print(
            f"receiver alerts update: the comment was not added: {applied.comment_error}",
            file=sys.stderr,
        )
        return ERROR
    return OK


def _fields(record: AuditRecord) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(record)

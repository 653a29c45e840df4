"""`receiver securescore show TENANT` and `receiver controls update ID`: the operator's view
of Secure Score (the trend and what would raise it most) and the one write Graph allows on it,
a control's state (``PATCH secureScoreControlProfiles/{id}``).

Both talk to Graph only (no Redis, and so no shared rate limiter: a handful of calls). A Graph
refusal is printed as Graph gave it (status, code, message, request-id) with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from receiver.cli.common import (
    Subparsers,
    add_group,
    load_settings,
    pick_tenant,
    quiet_logging,
)
from receiver.cli.exit import ERROR, OK
from receiver.cli.table import table

if TYPE_CHECKING:
    from receiver.config.settings import TenantSettings
    from receiver.graph.client import GraphClient

# The states Graph takes (controlStateUpdates[].state), by the CLI's case-insensitive names.
STATES = {
    "default": "Default",
    "ignored": "Ignored",
    "thirdparty": "ThirdParty",
    "reviewed": "Reviewed",
}
DEFAULT_VENDOR = {
    "provider": "SecureScore",
    "providerVersion": None,
    "subProvider": None,
    "vendor": "Microsoft",
}

Print = Callable[[str], None]


def register(subparsers: Subparsers) -> None:
    show_parser = add_group(
        subparsers,
        "securescore",
        "Secure Score: the trend and the top improvement actions",
        _cmd,
        "action",
        [
            (
                "show",
                "a tenant's daily Secure Score (trend table) and the improvement actions "
                "worth the most points",
            )
        ],
    )["show"]
    show_parser.add_argument("tenant", metavar="TENANT", help="tenant name or id")
    for flag, default, low, high, text in (
        ("--days", 30, 1, 90, "days of history, 1-90 (default: 30)"),
        ("--top", 10, 0, 100, "improvement actions to list (default: 10)"),
    ):
        show_parser.add_argument(
            flag, type=int, default=default, choices=range(low, high + 1), metavar="N", help=text
        )

    update = add_group(
        subparsers,
        "controls",
        "Secure Score control profiles",
        _cmd,
        "action",
        [
            (
                "update",
                "set a Secure Score control's state in Graph, with a comment, and print "
                "it as read back",
            )
        ],
    )["update"]
    update.add_argument("id", metavar="ID", help="the control (profile) id, e.g. AdminMFAV2")
    update.add_argument(
        "--tenant", default=None, help="tenant name or id (needed with several tenants)"
    )
    update.add_argument(
        "--state",
        required=True,
        type=str.lower,
        choices=["default", "ignored", "thirdparty", "reviewed"],
        metavar="default|ignored|thirdParty|reviewed",
    )
    update.add_argument("--comment", required=True, help="why (kept in Graph)")
    update.add_argument("--assigned-to", default=None, metavar="UPN", help="who owns the control")


def _cmd(args: argparse.Namespace) -> int:
    """`receiver securescore show` and `receiver controls update` (Graph only)."""
    import asyncio

    from receiver.graph.auth import GraphAuthError, TokenProvider
    from receiver.graph.client import GraphClient, GraphError

    settings = load_settings(args)
    if settings is None:
        return ERROR
    what = f"receiver {args.command} {getattr(args, 'action', '')}".rstrip()
    found = pick_tenant(settings, args.tenant)
    if isinstance(found, str):
        print(f"{what}: {found}", file=sys.stderr)
        return ERROR
    quiet_logging()

    async def main(tenant: TenantSettings) -> int:
        graph = GraphClient(settings.graph, TokenProvider(settings.graph, settings.tenants))
        try:
            if args.command == "securescore":
                return await show(graph, tenant, args.days, args.top)
            return await update_control(
                graph, tenant, args.id, args.state, args.comment, args.assigned_to
            )
        finally:
            await graph.aclose()

    try:
        return asyncio.run(main(found))
    except (GraphError, GraphAuthError) as exc:
        print(f"{what}: {exc}", file=sys.stderr)
    return ERROR


async def show(
    graph: GraphClient, tenant: TenantSettings, days: int, top: int, out: Print = print
) -> int:
    from receiver.securescore.events import points
    from receiver.securescore.job import PROFILES_PATH, read_items, read_scores
    from receiver.securescore.watch import parse_profiles, top_actions

    snapshots = await read_scores(graph, tenant.tenant_id, days)
    if not snapshots:
        out(f"{tenant.name}: Graph has no Secure Score for this tenant yet")
        return OK
    profiles = parse_profiles(await read_items(graph, tenant.tenant_id, PROFILES_PATH))
    newest, oldest = snapshots[-1], snapshots[0]
    out(
        f"Secure Score of {tenant.name} on {newest.day}: {points(newest.current)} of "
        f"{points(newest.maximum)} ({newest.percentage:g}%), "
        f"{newest.current - oldest.current:+.2f} over {len(snapshots)} days"
    )
    out("")
    rows = []
    previous = None
    for s in snapshots:
        change = "" if previous is None else f"{s.current - previous:+.2f}"
        rows.append(
            (
                s.day.isoformat(),
                f"{s.current:.2f}",
                points(s.maximum),
                f"{s.percentage:.1f}",
                change,
            )
        )
        previous = s.current
    out(table(rows, ("DATE", "SCORE", "MAX", "%", "CHANGE"), right={1, 2, 3, 4}))
    actions = top_actions(profiles, newest, top)
    out("")
    if not actions:
        out(
            "Top improvement actions: none (every control is at its maximum, ignored or "
            "covered by a third party)"
        )
        return OK
    out("Top improvement actions (points to gain):")
    out(
        table(
            [
                (str(i), f"+{points(a.gain)}", a.id, a.service, a.user_impact, a.title)
                for i, a in enumerate(actions, start=1)
            ],
            ("#", "GAIN", "CONTROL", "SERVICE", "IMPACT", "TITLE"),
            right={0, 1},
        )
    )
    return OK


async def update_control(
    graph: GraphClient,
    tenant: TenantSettings,
    control_id: str,
    state: str,
    comment: str,
    assigned_to: str | None,
    out: Print = print,
) -> int:
    """Set the control's state (with a comment), then read it back and print it."""
    from receiver.securescore.job import PROFILES_PATH

    path = f"{PROFILES_PATH}/{quote(control_id, safe='')}"
    profile = await graph.get(tenant.tenant_id, path)
    body: dict[str, Any] = {
        "state": STATES[state.lower()],
        "comment": comment,
        # Graph wants the profile's vendorInformation back on an update.
        "vendorInformation": profile.get("vendorInformation") or DEFAULT_VENDOR,
    }
    if assigned_to is not None:
        body["assignedTo"] = assigned_to
    await graph.patch(tenant.tenant_id, path, body)
    after = await graph.get(tenant.tenant_id, path)
    updates = [u for u in after.get("controlStateUpdates") or [] if isinstance(u, dict)]
    latest = updates[-1] if updates else {}
    out(
        f"{tenant.name}: control {after.get('id', control_id)} ({after.get('title') or 'no title'})"
    )
    out(f"  state       {latest.get('state') or 'Default'}")
    out(f"  comment     {latest.get('comment') or ''}")
    out(f"  assigned to {latest.get('assignedTo') or '-'}")
    out(f"  updated by  {latest.get('updatedBy') or '-'} at {latest.get('updatedDateTime') or '-'}")
    return OK

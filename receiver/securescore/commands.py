"""``receiver securescore show TENANT`` and ``receiver controls update ID``: the operator's view
of Secure Score (the trend and what would raise it most) and the one write Graph allows on it,
a control's state (``PATCH secureScoreControlProfiles/{id}``).

Both talk to Graph only (no Redis, and so no shared rate limiter: a handful of calls). A Graph
refusal is printed as Graph gave it (status, code, message, request-id) with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from receiver.config.settings import Settings, TenantSettings
from receiver.graph.auth import GraphAuthError, TokenProvider
from receiver.graph.client import GraphClient, GraphError
from receiver.securescore.events import points
from receiver.securescore.job import PROFILES_PATH, ScoreSource, read_items, read_scores
from receiver.securescore.watch import parse_profiles, top_actions

# The states Graph takes (controlStateUpdates[].state), by the CLI's case-insensitive names.
STATES = {"default": "Default", "ignored": "Ignored", "thirdparty": "ThirdParty",
          "reviewed": "Reviewed"}
DEFAULT_VENDOR = {"provider": "SecureScore", "providerVersion": None, "subProvider": None,
                  "vendor": "Microsoft"}

Print = Callable[[str], None]


class ControlWriter(ScoreSource, Protocol):
    async def patch(self, tenant_id: str, path: str, body: Any) -> dict[str, Any]: ...


def _table(rows: Sequence[Sequence[str]], out: Print, right: frozenset[int] = frozenset()
           ) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out("  ".join(cells).rstrip())


def find_tenant(settings: Settings, name: str | None) -> TenantSettings | str:
    """The tenant named (by name or id), the only one when none is named; else why not."""
    names = ", ".join(t.name for t in settings.tenants) or "none"
    if name is None:
        if len(settings.tenants) == 1:
            return settings.tenants[0]
        return f"name the tenant with --tenant (configured: {names})"
    for t in settings.tenants:
        if name.lower() in (t.name, t.tenant_id.lower()):
            return t
    return f"no tenant {name!r} (configured: {names})"


async def show(graph: ScoreSource, tenant: TenantSettings, days: int, top: int,
               out: Print = print) -> int:
    snapshots = await read_scores(graph, tenant.tenant_id, days)
    if not snapshots:
        out(f"{tenant.name}: Graph has no Secure Score for this tenant yet")
        return 0
    profiles = parse_profiles(await read_items(graph, tenant.tenant_id, PROFILES_PATH))
    newest, oldest = snapshots[-1], snapshots[0]
    out(f"Secure Score of {tenant.name} on {newest.day}: {points(newest.current)} of "
        f"{points(newest.maximum)} ({newest.percentage:g}%), "
        f"{newest.current - oldest.current:+.2f} over {len(snapshots)} days")
    out("")
    rows = [("DATE", "SCORE", "MAX", "%", "CHANGE")]
    previous = None
    for s in snapshots:
        change = "" if previous is None else f"{s.current - previous:+.2f}"
        rows.append((s.day.isoformat(), f"{s.current:.2f}", points(s.maximum),
                     f"{s.percentage:.1f}", change))
        previous = s.current
    _table(rows, out, right=frozenset({1, 2, 3, 4}))
    actions = top_actions(profiles, newest, top)
    out("")
    if not actions:
        out("Top improvement actions: none (every control is at its maximum, ignored or "
            "covered by a third party)")
        return 0
    out("Top improvement actions (points to gain):")
    table: list[tuple[str, ...]] = [("#", "GAIN", "CONTROL", "SERVICE", "IMPACT", "TITLE")]
    table += [(str(i), f"+{points(a.gain)}", a.id, a.service, a.user_impact, a.title)
             for i, a in enumerate(actions, start=1)]
    _table(table, out, right=frozenset({0, 1}))
    return 0


async def update_control(graph: ControlWriter, tenant: TenantSettings,
                         control_id: str, state: str, comment: str,
                         assigned_to: str | None, out: Print = print) -> int:
    """Set the control's state (with a comment), then read it back and print it."""
    path = f"{PROFILES_PATH}/{quote(control_id, safe='')}"
    profile = await graph.get(tenant.tenant_id, path)
    body: dict[str, Any] = {
        "state": STATES[state.lower()], "comment": comment,
        # Graph wants the profile's vendorInformation back on an update.
        "vendorInformation": profile.get("vendorInformation") or DEFAULT_VENDOR}
    if assigned_to is not None:
        body["assignedTo"] = assigned_to
    await graph.patch(tenant.tenant_id, path, body)
    after = await graph.get(tenant.tenant_id, path)
    updates = [u for u in after.get("controlStateUpdates") or [] if isinstance(u, dict)]
    latest = updates[-1] if updates else {}
    out(f"{tenant.name}: control {after.get('id', control_id)} "
        f"({after.get('title') or 'no title'})")
    out(f"  state       {latest.get('state') or 'Default'}")
    out(f"  comment     {latest.get('comment') or ''}")
    out(f"  assigned to {latest.get('assignedTo') or '-'}")
    out(f"  updated by  {latest.get('updatedBy') or '-'} at {latest.get('updatedDateTime') or '-'}")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """The CLI entry: ``args.command`` is securescore or controls."""
    from receiver.logs import setup_logging

    what = f"receiver {args.command} {getattr(args, 'action', '')}".rstrip()
    found = find_tenant(settings, args.tenant)
    if isinstance(found, str):
        print(f"{what}: {found}", file=sys.stderr)
        return 1
    setup_logging("WARNING", "text")

    async def main(tenant: TenantSettings) -> int:
        graph = GraphClient(settings.graph, TokenProvider(settings.graph, settings.tenants))
        try:
            if args.command == "securescore":
                return await show(graph, tenant, args.days, args.top)
            return await update_control(graph, tenant, args.id, args.state, args.comment,
                                        args.assigned_to)
        finally:
            await graph.aclose()

    try:
        return asyncio.run(main(found))
    except (GraphError, GraphAuthError) as exc:
        print(f"{what}: {exc}", file=sys.stderr)
    return 1

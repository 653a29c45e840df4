"""Grouping: one message per incident or burst instead of one per alert. Pure.

A route with ``group_by`` puts the alerts it sends to a sink into groups: alerts with the same
values of the ``group_by`` fields (``incident_id``, ``tenant``, ``raw.…`` paths) share one. A
group's message is an :class:`Envelope` of ``kind="group"`` that summarises its members, so
every sink and template renders it without knowing about groups; the members (without their
raw Graph bodies) are in ``raw["group"]["alerts"]``.

Timing follows Alertmanager's words (see ``receiver.pipeline.grouping`` for the mechanics):
``group_wait`` after a group's first alert its first message goes out; later alerts and
changes are sent together at most every ``group_interval``; while some member is not resolved,
the group is sent again every ``repeat_interval`` as a reminder. Unlike Alertmanager, a route
without ``group_by`` does not group at all: each alert gets its own message (the right default
for security alerts, where a batch would delay the first one).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

from receiver import clock
from receiver.envelope import SEVERITIES, Entity, Envelope

# Alerts and incidents are grouped; other events a route sends (a Secure Score drop or
# digest) are already one message each and go out at once.
GROUPED_KINDS = frozenset({"alert", "incident"})
MAX_LISTED = 20  # members listed in the description; the rest are counted
MAX_ENTITIES = 12

_STATUS_ORDER = {"new": 0, "inProgress": 1, "unknown": 2, "resolved": 3}


def group_labels(group_by: Sequence[str], envelope: Envelope) -> dict[str, str]:
    """The values an alert is grouped on (a missing field groups as the empty string)."""
    return {name: envelope.value(name) or "" for name in group_by}


def group_id(sink: str, route: str, labels: dict[str, str]) -> str:
    """A stable id of the group a sink's route puts these label values in."""
    key = json.dumps([sink, route, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def _common(values: Sequence[str]) -> str:
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else ""


def _line(member: Envelope) -> str:
    kind = "Incident: " if member.kind == "incident" else ""
    parts = [f"[{member.severity.capitalize()}] {kind}{member.title}", member.status]
    if member.provider:
        parts.append(member.provider)
    return " · ".join(parts)


def summarize(
    gid: str,
    started_ms: int,
    sent_ms: int,
    labels: dict[str, str],
    members: Sequence[Envelope],
    changed: Sequence[str],
    *,
    first: bool,
) -> Envelope:
    """The group's message: one envelope standing for all of its current members.

    ``changed`` are the ids of members that are new or changed since the last message; a
    later message with none is a reminder (the group has members that are not resolved).
    """
    if not members:
        raise ValueError("a group message needs at least one member")
    ordered = sorted(
        members,
        key=lambda m: (
            -_severity_rank(m.severity),
            _STATUS_ORDER.get(m.status, 2),
            m.created_at,
            m.id,
        ),
    )
    top = ordered[0]
    n = len(ordered)
    statuses = {m.status for m in ordered}
    status = next((s for s in ("new", "inProgress", "unknown") if s in statuses), "resolved")
    shown = ", ".join(f"{k}={v}" for k, v in labels.items() if v)
    named_by = next((m for m in ordered if m.kind == "incident"), None)
    if named_by is not None:  # the incident names the group; its alerts are the rest
        title = named_by.title if n == 1 else f"{named_by.title} ({n - 1} alert(s))"
    else:
        title = top.title if n == 1 else f"{n} alerts: {top.title} and {n - 1} more"
    lines = [
        ("* " if m.id in changed and not first else "- ") + _line(m) for m in ordered[:MAX_LISTED]
    ]
    if n > MAX_LISTED:
        lines.append(f"... and {n - MAX_LISTED} more")
    header = f"Grouped by {shown}." if shown else "Grouped."
    if not first and changed:
        header += f" {len(changed)} new or changed since the last message (marked *)."
    elif not first:
        header += " Reminder: not all of them are resolved."
    entities: list[Entity] = []
    for m in ordered:
        for e in m.entities:
            if e not in entities and len(entities) < MAX_ENTITIES:
                entities.append(e)
    incident = _common([m.incident_id for m in ordered])
    incident_url = _common([m.incident_web_url for m in ordered])
    envelope = Envelope(
        id=f"group-{gid}-{started_ms}",
        tenant_id=_common([m.tenant_id for m in ordered]),
        tenant=_common([m.tenant for m in ordered]),
        source_api="group",
        kind="group",
        title=title,
        severity=top.severity,
        status=status,
        description="\n".join([header, *lines]),
        category=_common([m.category for m in ordered]),
        provider=_common([m.provider for m in ordered]),
        product=_common([m.product for m in ordered]),
        assigned_to=_common([m.assigned_to for m in ordered]),
        created_at=clock.from_ms(started_ms),
        updated_at=clock.from_ms(sent_ms),
        first_activity_at=min((m.first_activity_at or m.created_at for m in ordered), default=""),
        last_activity_at=max((m.last_activity_at or m.updated_at for m in ordered), default=""),
        incident_id=incident,
        web_url=incident_url or top.web_url,
        incident_web_url=incident_url,
        tags=tuple(dict.fromkeys(t for m in ordered for t in m.tags)),
        mitre_techniques=tuple(dict.fromkeys(t for m in ordered for t in m.mitre_techniques)),
        entities=tuple(entities),
        raw={
            "group": {
                "id": gid,
                "labels": labels,
                "alerts": [_without_raw(m) for m in ordered],
                "changed": list(changed),
            }
        },
    )
    if first:
        return envelope
    return envelope.as_update(("alerts",) if changed else ("reminder",))


def _without_raw(member: Envelope) -> dict[str, object]:
    data = replace(member, raw={}).to_dict()
    data.pop("raw", None)
    return data


def all_resolved(members: Sequence[Envelope]) -> bool:
    return bool(members) and all(m.status == "resolved" for m in members)


__all__ = ["GROUPED_KINDS", "all_resolved", "group_id", "group_labels", "summarize"]

"""Findings as ``secure_score`` envelopes, so the routing tree and the sinks take them like
alerts: routes match ``kind = secure_score`` (and ``severity``, ``tenant``...), the generic
templates show the title, facts and description, and the secure-score templates read ``raw``.

``raw`` is the event's data (camelCase, like Graph's own payloads): ``reason`` (drop, control,
digest), ``date``, ``week``, ``currentScore``, ``maxScore``, ``percentage``, ``previousScore``,
``change``, ``controls`` (the controls that fell), ``trend`` (``date``, ``currentScore``,
``maxScore`` per day, oldest first), ``actions`` (top improvement actions, ``gain`` = points
to win) and ``averageComparativeScores``. A webhook receives exactly this in the envelope.
"""

from __future__ import annotations

from typing import Any

from receiver.envelope import Envelope
from receiver.securescore.watch import Finding

KIND = "secure_score"
SOURCE_API = "secureScores"
PORTAL_URL = "https://security.microsoft.com/securescore"
SEVERITY = {"drop": "medium", "control": "low", "digest": "informational"}


def points(value: float) -> str:
    """A score as people write it: 190.35, 190.3, 190."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def event_id(tenant: str, finding: Finding) -> str:
    """One id per tenant, day and reason (per ISO week for the digest): the same finding made
    twice has the same id."""
    when = finding.week if finding.reason == "digest" else finding.day.isoformat()
    return f"securescore:{tenant}:{when}:{finding.reason}"


def _title(finding: Finding, tenant: str) -> str:
    s = finding.snapshot
    if finding.reason == "drop":
        return (
            f"Secure Score dropped {points(-finding.change)} points to {points(s.current)} "
            f"of {points(s.maximum)} ({tenant})"
        )
    if finding.reason == "control":
        first = finding.controls[0]
        more = f" and {len(finding.controls) - 1} more" if len(finding.controls) > 1 else ""
        return f"Secure Score control regressed: {first.title}{more} ({tenant})"
    return (
        f"Secure Score weekly digest ({tenant}): {points(s.current)} of "
        f"{points(s.maximum)} ({s.percentage:g}%), {finding.change:+g} in "
        f"{len(finding.trend)} days"
    )


def _description(finding: Finding, tenant: str) -> str:
    s = finding.snapshot
    lines = []
    if finding.previous is not None:
        lines.append(
            f"The Secure Score of {tenant} went from {points(finding.previous.current)} "
            f"to {points(s.current)} ({finding.change:+g} points) on {s.day}; maximum "
            f"{points(s.maximum)} ({s.percentage:g}%)."
        )
    else:
        lines.append(
            f"The Secure Score of {tenant} is {points(s.current)} of "
            f"{points(s.maximum)} ({s.percentage:g}%) on {s.day}, {finding.change:+g} "
            f"points over {len(finding.trend)} days."
        )
    if finding.controls:
        lines.append(
            "Controls that fell: "
            + "; ".join(
                f"{c.title} ({c.name}): {points(c.before)} -> {points(c.after)}"
                for c in finding.controls
            )
            + "."
        )
    if finding.actions:
        lines.append(
            "Top improvement actions: "
            + "; ".join(f"{a.title} (+{points(a.gain)})" for a in finding.actions)
            + "."
        )
    return " ".join(lines)


def raw(finding: Finding, tenant_id: str) -> dict[str, Any]:
    s = finding.snapshot
    return {
        "reason": finding.reason,
        "date": s.day.isoformat(),
        "week": finding.week,
        "tenantId": tenant_id,
        "currentScore": s.current,
        "maxScore": s.maximum,
        "percentage": s.percentage,
        "previousScore": finding.previous.current if finding.previous else None,
        "change": finding.change,
        "controls": [
            {
                "controlName": c.name,
                "controlCategory": c.category,
                "title": c.title,
                "previousScore": c.before,
                "score": c.after,
                "maxScore": c.max_score,
            }
            for c in finding.controls
        ],
        "trend": [
            {"date": t.day.isoformat(), "currentScore": t.current, "maxScore": t.maximum}
            for t in finding.trend
        ],
        "actions": [
            {
                "id": a.id,
                "title": a.title,
                "gain": a.gain,
                "score": a.score,
                "maxScore": a.max_score,
                "rank": a.rank,
                "controlCategory": a.category,
                "service": a.service,
                "userImpact": a.user_impact,
                "implementationCost": a.implementation_cost,
                "actionUrl": a.action_url,
            }
            for a in finding.actions
        ],
        "averageComparativeScores": [{"basis": b, "averageScore": v} for b, v in s.comparative],
    }


def envelope(finding: Finding, tenant: str, tenant_id: str) -> Envelope:
    """The event of one finding for the tenant named ``tenant``."""
    stamp = f"{finding.day.isoformat()}T00:00:00Z"
    return Envelope(
        id=event_id(tenant, finding),
        tenant_id=tenant_id,
        source_api=SOURCE_API,
        kind=KIND,
        tenant=tenant,
        title=_title(finding, tenant),
        severity=SEVERITY[finding.reason],
        status="new",
        description=_description(finding, tenant),
        category="Secure Score",
        provider="SecureScore",
        product="Microsoft Secure Score",
        created_at=stamp,
        updated_at=stamp,
        web_url=f"{PORTAL_URL}?viewid=overview&tid={tenant_id}",
        tags=(f"secure_score:{finding.reason}",),
        raw=raw(finding, tenant_id),
    )

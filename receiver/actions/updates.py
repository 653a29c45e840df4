"""Alert updates in Graph, for the action links and ``receiver alerts update``.

Two APIs, two shapes:

- alerts_v2 (``PATCH /security/alerts_v2/{id}``): ``status``, ``classification``,
  ``determination``, ``assignedTo``; a comment is its own call
  (``POST /security/alerts_v2/{id}/comments``).
- legacy alerts (``PATCH /security/alerts/{id}``): the body must carry the alert's
  ``vendorInformation`` (provider and vendor), and only ``assignedTo``, ``closedDateTime``,
  ``comments``, ``feedback``, ``status`` and ``tags`` may be updated. So the alert is read
  first; the classification maps to ``feedback``, a comment is appended to ``comments``, a
  resolution sets ``closedDateTime``; determination does not exist there and is refused here.

Alert ids (from a signed link's claims or the command line) become path segments only through
:func:`receiver.graph.resources.alert_path`: checked and quoted, so no id can reach another
Graph path; one that cannot be a Graph id is refused as :class:`InvalidAlertId` (a kind of
:class:`AlertNotFound`: no alert has it) before any Graph call.

Values are passed to Graph as given (beyond the legacy mapping): Graph's answer to a bad
value is the authority, and it is shown to the user as Graph gave it. Every update ends with
the alert read back, so the caller shows what Graph now holds, not what it was asked.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from receiver import clock
from receiver.actions.rules import ACTIONS, comment
from receiver.envelope import Envelope, from_legacy, from_v2
from receiver.graph.client import GraphError
from receiver.graph.resources import BadResource, alert_path

__all__ = [
    "AlertNotFound",
    "AlertUpdate",
    "Applied",
    "InvalidAlertId",
    "UpdateRefused",
    "apply_update",
    "envelope",
    "for_action",
    "read_alert",
]

V2_PATH = "security/alerts_v2"
LEGACY_PATH = "security/alerts"
PATHS = {"alerts_v2": V2_PATH, "alerts_v1": LEGACY_PATH}
# alerts_v2 classification -> legacy feedback (Graph's v1 -> v2 migration mapping).
LEGACY_FEEDBACK = {
    "truePositive": "truePositive",
    "falsePositive": "falsePositive",
    "informationalExpectedActivity": "benignPositive",
    "benignPositive": "benignPositive",
    "unknown": "unknown",
}
LEGACY_STATUS = {"new": "newAlert"}


class GraphApi(Protocol):
    async def get(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]: ...

    async def post(self, tenant_id: str, path: str, body: Any = None) -> dict[str, Any]: ...

    async def patch(self, tenant_id: str, path: str, body: Any) -> dict[str, Any]: ...


class AlertNotFound(Exception):
    """No such alert in the tenant (Graph answered 404 for every API asked)."""


class InvalidAlertId(AlertNotFound):
    """An id that cannot be a Graph alert id (a path, a '..', percent-encoding): refused
    without calling Graph. Callers that handle AlertNotFound refuse it the same way."""


def _path(source_api: str, alert_id: str) -> str:
    try:
        return alert_path(PATHS[source_api], alert_id)
    except (BadResource, KeyError):
        raise InvalidAlertId(f"not a Graph alert id: {alert_id[:80]!r}") from None


class UpdateRefused(ValueError):
    """The update cannot be made on this kind of alert; refused before calling Graph."""


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    status: str | None = None
    classification: str | None = None
    determination: str | None = None
    assigned_to: str | None = None
    comment: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def describe(self) -> str:
        return ", ".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        )


def for_action(action: str, who: str, via: str = "alert action link") -> AlertUpdate:
    """The update an action performs (receiver.actions.rules); ``who`` is the person acting
    (a name or UPN), ``via`` the way they acted (an action link, Slack)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    rule = ACTIONS[action]
    return AlertUpdate(
        status=rule.status,
        classification=rule.classification,
        assigned_to=(who or None) if rule.assigns else None,
        comment=comment(action, who, via),
    )


def v2_body(update: AlertUpdate) -> dict[str, Any]:
    body = {
        "status": update.status,
        "classification": update.classification,
        "determination": update.determination,
        "assignedTo": update.assigned_to,
    }
    return {k: v for k, v in body.items() if v is not None}


def legacy_body(update: AlertUpdate, alert: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The PATCH body for a legacy alert: vendorInformation plus the updatable fields."""
    if update.determination is not None:
        raise UpdateRefused(
            "legacy alerts (security/alerts) have no determination; "
            "leave --determination out or use the alert's alerts_v2 id"
        )
    vendor = alert.get("vendorInformation") or {}
    body: dict[str, Any] = {
        "vendorInformation": {"provider": vendor.get("provider"), "vendor": vendor.get("vendor")}
    }
    if update.status is not None:
        body["status"] = LEGACY_STATUS.get(update.status, update.status)
        if update.status == "resolved" and not alert.get("closedDateTime"):
            body["closedDateTime"] = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if update.classification is not None:
        body["feedback"] = LEGACY_FEEDBACK.get(update.classification, update.classification)
    if update.assigned_to is not None:
        body["assignedTo"] = update.assigned_to
    if update.comment is not None:
        existing = [c for c in alert.get("comments") or [] if isinstance(c, str)]
        body["comments"] = [*existing, update.comment]
    return body


@dataclass(frozen=True, slots=True)
class Applied:
    source_api: str
    before: dict[str, Any]
    after: dict[str, Any]  # read back from Graph after the update
    request: dict[str, Any]  # the PATCH body sent (no secrets in it)
    # alerts_v2: the comment is a second call; the update stands if only it failed.
    comment_error: str = ""


def envelope(source_api: str, alert: dict[str, Any]) -> Envelope:
    """The envelope of an alert read from ``source_api`` (``alerts_v2`` or the legacy API)."""
    return from_v2(alert) if source_api == "alerts_v2" else from_legacy(alert)


async def read_alert(
    graph: GraphApi, tenant_id: str, alert_id: str, source_api: str = "auto"
) -> tuple[str, dict[str, Any]]:
    """(source api, alert). ``auto`` tries alerts_v2, then the legacy API."""
    sources = ["alerts_v2", "alerts_v1"] if source_api == "auto" else [source_api]
    paths = [(source, _path(source, alert_id)) for source in sources]  # all checked first
    for source, path in paths:
        try:
            return source, await graph.get(tenant_id, path)
        except GraphError as exc:
            if exc.status != 404:
                raise
    raise AlertNotFound(f"no alert {alert_id} in tenant {tenant_id}")


async def apply_update(
    graph: GraphApi,
    tenant_id: str,
    alert_id: str,
    update: AlertUpdate,
    *,
    source_api: str = "auto",
    alert: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Applied:
    """Update the alert in Graph and read it back. Raises GraphError as Graph refused it,
    AlertNotFound, or UpdateRefused (before any write)."""
    if update.is_empty():
        raise UpdateRefused("nothing to update")
    if alert is None or source_api == "auto":
        source_api, alert = await read_alert(graph, tenant_id, alert_id, source_api)
    path = _path(source_api, alert_id)
    comment_error = ""
    if source_api == "alerts_v2":
        body = v2_body(update)
        if body:
            await graph.patch(tenant_id, path, body)
        if update.comment:
            try:
                await graph.post(
                    tenant_id,
                    f"{path}/comments",
                    {
                        "@odata.type": "microsoft.graph.security.alertComment",
                        "comment": update.comment,
                    },
                )
            except GraphError as exc:
                if not body:
                    raise
                comment_error = str(exc)
    else:
        body = legacy_body(update, alert, now or clock.now())
        await graph.patch(tenant_id, path, body)
    after = await graph.get(tenant_id, path)
    return Applied(
        source_api=source_api, before=alert, after=after, request=body, comment_error=comment_error
    )

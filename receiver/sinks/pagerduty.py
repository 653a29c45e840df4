"""PagerDuty Events API v2: one PagerDuty alert (and incident) per Graph alert or group, kept
in step with Graph's triage.

- ``dedup_key`` is tenant + alert id (a group message's id names its group, so a group is one
  incident), so every version of an alert lands on one PagerDuty alert and a retry is
  idempotent; nothing is stored, so a restart or a second worker sends the same key.
- The event follows the alert's state in Graph: ``trigger`` while it is new and nobody has it,
  ``acknowledge`` once it is taken (status inProgress, or assigned to someone), ``resolve``
  when it is resolved. An alert seen for the first time already taken gets a ``trigger`` and
  then an ``acknowledge``: an acknowledge for a key PagerDuty never saw is dropped, and the
  team would have no incident at all. One seen first as resolved gets only the ``resolve``
  (paging someone for a closed alert helps nobody; PagerDuty ignores it).
- Events API facts (PagerDuty/api-schema ``reference/events-v2/openapiv3.json``): 202 accepted;
  400 is not retried; 429 and 5xx are; ``payload`` needs ``summary``, ``severity`` (critical,
  error, warning, info) and ``source``; ``client``/``client_url`` are used on triggers only.
"""

from __future__ import annotations

from typing import Any

from receiver.config.sinks import TEMPLATE_NAMES, PagerDutySinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

CLIENT = "graph-alert-receiver"
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255


def dedup_key(envelope: Envelope) -> str:
    return f"{envelope.tenant_id}:{envelope.id}"[:MAX_DEDUP_KEY]


def taken(envelope: Envelope) -> bool:
    """Someone has it: Graph's status is inProgress, or it is assigned while still new."""
    return envelope.status == "inProgress" or (
        envelope.status != "resolved" and bool(envelope.assigned_to)
    )


def event_action(envelope: Envelope) -> str:
    if envelope.status == "resolved":
        return "resolve"
    if taken(envelope):
        return "acknowledge"
    return "trigger"


def event_actions(envelope: Envelope) -> tuple[str, ...]:
    """The events one delivery sends, in order (see the module docstring)."""
    action = event_action(envelope)
    if action == "acknowledge" and not envelope.is_update:
        return ("trigger", "acknowledge")
    return (action,)


class PagerDutySink(http.HttpSink[PagerDutySinkSettings]):
    type = "pagerduty"

    def __init__(
        self,
        config: PagerDutySinkSettings,
        pool: http.ClientPool,
        *,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config, pool, metrics=metrics)
        self._key = config.routing_key.get_secret_value()
        http.register_secret(self._key)
        self.templates = Templates("pagerduty", TEMPLATE_NAMES["pagerduty"], config.templates)

    def event(
        self, envelope: Envelope, delivery: Delivery, action: str | None = None
    ) -> dict[str, Any]:
        action = action or event_action(envelope)
        summary = self.templates.render("summary.txt", context(envelope, delivery, self.name))
        body: dict[str, Any] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": dedup_key(envelope),
            "payload": {
                "summary": summary[:MAX_SUMMARY] or envelope.id,
                "severity": self.config.severities.get(envelope.severity, "info"),  # type: ignore[call-overload]
                "source": (
                    self.config.source
                    or envelope.provider
                    or envelope.tenant
                    or envelope.tenant_id
                    or "microsoft-graph"
                ),
                "timestamp": envelope.first_activity_at or envelope.created_at or None,
                "component": envelope.product or envelope.provider or None,
                "group": envelope.tenant or envelope.tenant_id or None,
                "class": envelope.category or None,
                "custom_details": {
                    "alert_id": envelope.id,
                    "tenant_id": envelope.tenant_id,
                    "kind": envelope.kind,
                    "status": envelope.status,
                    "severity": envelope.severity,
                    "assigned_to": envelope.assigned_to,
                    "classification": envelope.classification,
                    "determination": envelope.determination,
                    "incident_id": envelope.incident_id,
                    "changes": list(envelope.changes),
                    "entities": [f"{e.type}: {e.name}" for e in envelope.entities],
                    "description": envelope.description[:2000],
                },
            },
        }
        body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
        if action == "trigger":  # client, client_url: "only used for trigger events"
            body["client"] = CLIENT
            if envelope.web_url:
                body["client_url"] = envelope.web_url
        if envelope.web_url:
            body["links"] = [{"href": envelope.web_url, "text": "Open in Microsoft Defender"}]
        return body

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        sent = []
        for action in event_actions(envelope):
            event = self.event(envelope, delivery, action)
            await self._request("POST", self.config.url, json=event)
            sent.append(action)
        return Result(detail=f"{' + '.join(sent)} {dedup_key(envelope)}")

"""PagerDuty Events API v2: trigger (new, or updated and open), acknowledge (inProgress),
resolve (resolved); ``dedup_key`` is tenant + alert id, so every version of an alert lands on
one PagerDuty alert and retries are idempotent."""

from __future__ import annotations

from typing import Any

from receiver.envelope import Envelope
from receiver.sinkconfig import TEMPLATE_NAMES, PagerDutySinkSettings
from receiver.sinks import http
from receiver.sinks.base import BaseSink, Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

CLIENT = "graph-alert-receiver"
MAX_SUMMARY = 1024


def dedup_key(envelope: Envelope) -> str:
    return f"{envelope.tenant_id}:{envelope.id}"[:255]


def event_action(envelope: Envelope) -> str:
    if envelope.status == "resolved":
        return "resolve"
    if envelope.status == "inProgress":
        return "acknowledge"
    return "trigger"


class PagerDutySink(BaseSink):
    type = "pagerduty"

    def __init__(self, config: PagerDutySinkSettings, pool: http.ClientPool, *,
                 metrics: SinkMetrics | None = None) -> None:
        super().__init__(config.name, metrics=metrics)
        self.config = config
        self._key = config.routing_key.get_secret_value()
        http.register_secret(self._key)
        self.templates = Templates("pagerduty", TEMPLATE_NAMES["pagerduty"], config.templates)
        self._client = pool.client(config.ca_bundle)

    def event(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        action = event_action(envelope)
        summary = self.templates.render("summary.txt", context(envelope, delivery, self.name))
        body: dict[str, Any] = {
            "routing_key": self._key,
            "event_action": action,
            "dedup_key": dedup_key(envelope),
            "client": CLIENT,
            "payload": {
                "summary": summary[:MAX_SUMMARY] or envelope.id,
                "severity": self.config.severities.get(envelope.severity, "info"),  # type: ignore[call-overload]
                "source": (self.config.source or envelope.provider or envelope.tenant
                           or envelope.tenant_id or "microsoft-graph"),
                "timestamp": envelope.first_activity_at or envelope.created_at or None,
                "component": envelope.product or envelope.provider or None,
                "group": envelope.tenant or envelope.tenant_id or None,
                "class": envelope.category or None,
                "custom_details": {
                    "alert_id": envelope.id, "tenant_id": envelope.tenant_id,
                    "status": envelope.status, "severity": envelope.severity,
                    "incident_id": envelope.incident_id, "changes": list(envelope.changes),
                    "entities": [f"{e.type}: {e.name}" for e in envelope.entities],
                    "description": envelope.description[:2000],
                },
            },
        }
        body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
        if envelope.web_url:
            body["client_url"] = envelope.web_url
            body["links"] = [{"href": envelope.web_url, "text": "Open in Microsoft Defender"}]
        return body

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        event = self.event(envelope, delivery)
        await http.request(self._client, "POST", self.config.url,
                           what=f"pagerduty sink {self.name}",
                           timeout_s=self.config.timeout_s, json=event)
        return Result(detail=f"{event['event_action']} {event['dedup_key']}")

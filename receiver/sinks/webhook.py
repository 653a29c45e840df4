"""Webhook: a JSON POST of the envelope, signed per Standard Webhooks, optionally a CloudEvent.

Headers (https://www.standardwebhooks.com/): ``webhook-id`` (stable per alert version, so a
receiver can drop the retries of one delivery), ``webhook-timestamp`` (Unix seconds, set per
attempt) and ``webhook-signature`` = ``v1,`` + base64 HMAC-SHA256 over ``{id}.{timestamp}.{body}``
keyed with the base64-decoded part of the ``whsec_`` secret.

CloudEvents structured mode (``cloudevents: true``): content type
``application/cloudevents+json``, the envelope as ``data``, type
``com.microsoft.graph.security.alert.created`` / ``.updated`` (``...incident...`` for incidents,
``...secureScore...`` for Secure Score events).
A ``templates: {body.json: FILE}`` override replaces the body with a rendered JSON document.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

from receiver.config.sinks import WebhookSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

__all__ = ["WebhookSink", "cloudevent", "sign", "webhook_id"]

# Custom headers whose values are redacted like secrets.
_CREDENTIAL_HEADER = re.compile(r"(?i)auth|token|key|secret|signature|cookie|password")


def sign(secret: str, msg_id: str, timestamp: str | int, body: bytes | str) -> str:
    """The ``webhook-signature`` value (Standard Webhooks v1, symmetric)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    payload = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_id(envelope: Envelope) -> str:
    """Stable for one version of one alert in one tenant: retries carry the same id."""
    basis = "\x1f".join((envelope.tenant_id, envelope.source_api, envelope.id, envelope.version))
    return "msg_" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def cloudevent(envelope: Envelope, *, source: str, event_id: str) -> dict[str, Any]:
    kind = {"incident": "incident", "secure_score": "secureScore"}.get(envelope.kind, "alert")
    action = "updated" if envelope.is_update else "created"
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": f"com.microsoft.graph.security.{kind}.{action}",
        "subject": envelope.id,
        "time": envelope.version or None,
        "datacontenttype": "application/json",
        "data": envelope.to_dict(),
    }


class WebhookSink(http.HttpSink[WebhookSinkSettings]):
    type = "webhook"

    def __init__(
        self,
        config: WebhookSinkSettings,
        pool: http.ClientPool,
        *,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config, pool, metrics=metrics)
        self._url = config.url.get_secret_value()
        self._secret = config.signing_secret.get_secret_value() if config.signing_secret else None
        http.register_url(self._url)
        http.register_secret(self._secret)
        for key, value in config.headers.items():
            if _CREDENTIAL_HEADER.search(key):
                http.register_secret(value)
        names = ("body.json",) if "body.json" in config.templates else ()
        self.templates = Templates("webhook", names, config.templates)

    def body(self, envelope: Envelope, delivery: Delivery, msg_id: str) -> tuple[bytes, str]:
        if "body.json" in self.config.templates:
            doc = self.templates.render_json(
                "body.json", context(envelope, delivery, self.name, webhook_id=msg_id)
            )
            content_type = self.config.content_type
        elif self.config.cloudevents:
            doc = cloudevent(envelope, source=self.config.cloudevents_source, event_id=msg_id)
            content_type = "application/cloudevents+json"
        else:
            doc = envelope.to_dict()
            content_type = self.config.content_type
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        return text.encode(), content_type

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        msg_id = webhook_id(envelope)
        body, content_type = self.body(envelope, delivery, msg_id)
        headers = {**self.config.headers, "content-type": content_type, "webhook-id": msg_id}
        if self._secret:
            timestamp = str(int(time.time()))
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = sign(self._secret, msg_id, timestamp, body)
        response = await self._request("POST", self._url, content=body, headers=headers)
        return Result(detail=f"posted {msg_id}: HTTP {response.status_code}")

"""Slack: an incoming webhook with Block Kit (header, fields, context, a button to the portal)
and a plain ``text`` fallback for notifications and clients without blocks. One message per
delivery; the Slack app mode (one message per alert, updated in place) is slack_app.py."""

from __future__ import annotations

from typing import Any

from receiver.config.sinks import TEMPLATE_NAMES, SlackSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

SEVERITY_EMOJI = {
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "informational": ":large_blue_circle:",
    "unknown": ":white_circle:",
}


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters escaped, so alert text cannot form links or
    mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSink(http.HttpSink[SlackSinkSettings]):
    type = "slack"

    def __init__(
        self,
        config: SlackSinkSettings,
        pool: http.ClientPool,
        *,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config, pool, metrics=metrics)
        assert config.url is not None  # the webhook mode (the app mode: slack_app.py)
        self._url = config.url.get_secret_value()
        http.register_url(self._url)
        self.templates = Templates(
            "slack", TEMPLATE_NAMES["slack"], config.templates, filters={"mrkdwn": mrkdwn_escape}
        )

    def payload(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        ctx = context(
            envelope,
            delivery,
            self.name,
            emoji=SEVERITY_EMOJI.get(envelope.severity, ":white_circle:"),
        )
        doc: dict[str, Any] = self.templates.render_json("message.json", ctx)
        return doc

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        response = await self._request("POST", self._url, json=self.payload(envelope, delivery))
        return Result(detail=f"posted: HTTP {response.status_code}")

"""Microsoft Teams: a Workflows (Power Automate) webhook with an Adaptive Card 1.5, or a legacy
Office 365 connector with a MessageCard (``format: messagecard``).

Workflows expects the card wrapped as a message with one attachment::

    {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                         "contentUrl": null, "content": {card}}]}

Teams throttles with 429, with 503, or with 200 and "Microsoft Teams endpoint returned HTTP
error 429" in the body: all three are retried (``body_errors`` in the classification).
"""

from __future__ import annotations

from typing import Any

from receiver.config.sinks import TEMPLATE_NAMES, TeamsSinkSettings
from receiver.envelope import Envelope
from receiver.securescore import render as secure_score
from receiver.sinks import http
from receiver.sinks.base import Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context

# Adaptive Card container styles and MessageCard theme colours by severity.
CARD_STYLES = {
    "high": "attention",
    "medium": "warning",
    "low": "accent",
    "informational": "emphasis",
    "unknown": "default",
}
THEME_COLORS = {
    "high": "D13438",
    "medium": "F7630C",
    "low": "FFB900",
    "informational": "0078D4",
    "unknown": "605E5C",
}
ADAPTIVE_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def wrap(card: dict[str, Any]) -> dict[str, Any]:
    """The message a Teams Workflows webhook takes."""
    return {
        "type": "message",
        "attachments": [
            {"contentType": ADAPTIVE_CONTENT_TYPE, "contentUrl": None, "content": card}
        ],
    }


class TeamsSink(http.HttpSink[TeamsSinkSettings]):
    type = "teams"

    def __init__(
        self,
        config: TeamsSinkSettings,
        pool: http.ClientPool,
        *,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config, pool, metrics=metrics)
        self._url = config.url.get_secret_value()
        http.register_url(self._url)
        self.templates = Templates("teams", TEMPLATE_NAMES["teams"], config.templates)
        self.score_templates = Templates(
            "teams", secure_score.TEMPLATE_NAMES["teams"], config.templates
        )

    def payload(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        ctx = context(
            envelope,
            delivery,
            self.name,
            style=CARD_STYLES.get(envelope.severity, "default"),
            theme_color=THEME_COLORS.get(envelope.severity, "605E5C"),
        )
        if self.config.format == "messagecard":
            doc: dict[str, Any] = self.templates.render_json("messagecard.json", ctx)
            return doc
        if secure_score.is_secure_score(envelope):  # a compact score card
            ctx.update(secure_score.context(envelope))
            return wrap(self.score_templates.render_json("secure_score.json", ctx))
        card: dict[str, Any] = self.templates.render_json("adaptive.json", ctx)
        return wrap(card)

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        response = await self._request(
            "POST", self._url, json=self.payload(envelope, delivery), body_errors=True
        )
        return Result(detail=f"posted {self.config.format} card: HTTP {response.status_code}")

"""Previews of the Teams card an alert got: rendered by the configured Teams sinks' own code and
templates (overrides included), so the page shows what the channel shows, not a look-alike.

Only rendering: the sinks are built for their ``payload`` and never send anything.
"""

from __future__ import annotations

from typing import Any

from receiver.config.settings import Settings
from receiver.config.sinks import TeamsSinkSettings
from receiver.envelope import Envelope
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from receiver.sinks.teams import ADAPTIVE_CONTENT_TYPE, TeamsSink


class CardPreviews:
    """The Adaptive Card each Teams sink (``format: adaptive``) would post for an alert."""

    def __init__(self, settings: Settings) -> None:
        self._pool = ClientPool()
        metrics = SinkMetrics()
        self.sinks: dict[str, TeamsSink] = {}
        for config in settings.sinks:
            if isinstance(config, TeamsSinkSettings) and config.format == "adaptive":
                sink = build_sink(config, pool=self._pool, metrics=metrics)
                assert isinstance(sink, TeamsSink)
                self.sinks[config.name] = sink

    def card(
        self, envelope: Envelope, routes: dict[str, str]
    ) -> tuple[str, dict[str, Any] | None, str]:
        """(sink, card, note) for the alert: the card of the first Teams sink it was routed
        to (``routes``: sink -> route), else of the first Teams sink, with a note saying so."""
        if not self.sinks:
            return "", None, "no Teams sink (format: adaptive) is configured"
        sent = [name for name in routes if name in self.sinks]
        name = sent[0] if sent else next(iter(self.sinks))
        note = "" if sent else f"not routed to Teams; what {name} would post"
        try:
            message = self.sinks[name].payload(
                envelope, Delivery(route=routes.get(name, "route"), attempt=1)
            )
        except PermanentError as exc:
            return name, None, f"the card does not render: {exc}"
        except Exception as exc:  # one bad template must cost its card, never the page
            return name, None, f"the card does not render: {type(exc).__name__}"
        for attachment in message.get("attachments", []):
            if attachment.get("contentType") == ADAPTIVE_CONTENT_TYPE:
                content: dict[str, Any] = attachment["content"]
                return name, content, note
        return name, None, "the sink's message holds no Adaptive Card"

    async def aclose(self) -> None:
        await self._pool.aclose()

"""The latest alerts for the status page: the envelope the route stage remembered, the alert's
delivery timeline, and its Teams card preview.

Alert fields are attacker-influenced (a title is whatever the alert's source wrote): they are
only ever put on the page through the autoescaping template and HTML-safe JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from receiver import clock
from receiver.admin._cards import CardPreviews
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.consumer import Entry
from receiver.pipeline.fetch import envelope_of
from receiver.store.keys import Keys


@dataclass(frozen=True, slots=True)
class Event:
    at: str  # ISO 8601 UTC, milliseconds
    event: str
    sink: str
    attempt: str
    detail: str


@dataclass(frozen=True, slots=True)
class RecentAlert:
    routed_at: str
    envelope: Envelope
    timeline: list[Event]
    card_sink: str
    card: dict[str, Any] | None
    card_note: str

    def to_dict(self) -> dict[str, Any]:
        e = self.envelope
        return {
            "routed_at": self.routed_at,
            "id": e.id,
            "tenant": e.tenant or e.tenant_id,
            "title": e.title,
            "severity": e.severity,
            "status": e.status,
            "provider": e.provider,
            "version": e.version,
            "update": e.is_update,
            "timeline": [asdict(ev) for ev in self.timeline],
        }


def _event(raw: dict[str, Any]) -> Event:
    rest = [
        f"{k}={v}" for k, v in raw.items() if k not in ("at", "event", "sink", "attempt", "detail")
    ]
    detail = " ".join(([str(raw["detail"])] if "detail" in raw else []) + rest)
    return Event(
        clock.from_ms(float(raw.get("at", 0)) * 1000),
        str(raw.get("event", "")),
        str(raw.get("sink", "")),
        str(raw.get("attempt", "")),
        detail,
    )


async def recent(redis: Redis, keys: Keys, cards: CardPreviews, count: int) -> list[RecentAlert]:
    """The ``count`` latest alerts the route stage handled, newest first (one row per
    version: an update is a new row)."""
    out = []
    for stream_id, fields in await records.recent(redis, keys, count):
        try:
            envelope = envelope_of(Entry(stream_id, fields, 1))
        except (ValueError, TypeError, KeyError):
            continue  # not an envelope: nothing to show
        raw_events = await records.timeline(redis, keys, envelope.tenant_id, envelope.id)
        mine = [
            e for e in raw_events if e.get("sink") and e.get("version") in (None, envelope.version)
        ]
        routes = {
            str(e["sink"]): str(e.get("route", ""))
            for e in mine
            if e.get("event") in ("routed", "grouped")
        }
        grouped = {str(e["sink"]) for e in mine if e.get("event") == "grouped"}
        sink, card, note = cards.card(envelope, routes)
        if sink in grouped:  # the channel got a group message listing it, not this card
            note = f"sent to {sink} inside a group message; the alert's own card"
        out.append(
            RecentAlert(
                clock.from_ms(int(stream_id.split("-")[0])),
                envelope,
                [_event(e) for e in raw_events],
                sink,
                card,
                note,
            )
        )
    return out

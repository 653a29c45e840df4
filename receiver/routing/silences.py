"""Silences: time-bounded mutes with matchers and a comment. Pure; stored by the pipeline.

An alert is silenced when an active silence's matchers all match it. A silenced alert is not
delivered; the route stage records that it was silenced and by which silence.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from receiver import clock
from receiver.envelope import Envelope
from receiver.routing.matchers import Matcher


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str = ""

    @classmethod
    def new(
        cls,
        matchers: Iterable[str],
        ends_at: datetime,
        comment: str,
        *,
        created_by: str = "",
        starts_at: datetime | None = None,
    ) -> Silence:
        parsed = tuple(Matcher.parse(m) for m in matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher")
        if not comment.strip():
            raise ValueError("a silence needs a comment (why, and who to ask)")
        start = starts_at or clock.now()
        if ends_at <= start:
            raise ValueError("a silence must end after it starts")
        return cls(str(uuid.uuid4()), parsed, start, ends_at, comment.strip(), created_by)

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, envelope: Envelope) -> bool:
        return all(m.matches(envelope.value(m.name)) for m in self.matchers)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "matchers": [str(m) for m in self.matchers],
                "starts_at": self.starts_at.isoformat(),
                "ends_at": self.ends_at.isoformat(),
                "comment": self.comment,
                "created_by": self.created_by,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Silence:
        data = json.loads(text)
        return cls(
            id=data["id"],
            matchers=tuple(Matcher.parse(m) for m in data["matchers"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            comment=data["comment"],
            created_by=data.get("created_by", ""),
        )


def silenced_by(envelope: Envelope, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The first active silence that matches the envelope, if any."""
    for silence in silences:
        if silence.active(now) and silence.matches(envelope):
            return silence
    return None

"""Typed entries of every stream, and their codec.

``notifications`` and ``lifecycle``: :class:`NotificationEntry`. ``alerts``, each sink's stream,
its dead letters and the recent alerts: :class:`AlertEntry`. No other module spells a stream
field's name.

An entry keeps what later stages need and nothing secret (never the clientState). Written by
the web (source ``push``) and the poller (source ``poll``); read by the fetch stage and the
subscription supervisor.

On the wire an entry is one stream field ``e`` holding compact JSON (empty values left out):
one field instead of a dozen makes the XADD much cheaper to encode on the web's hot path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from redis.typing import EncodableT, FieldT

ENTRY_VERSION = 1
FIELD = "e"
# The fields of an AlertEntry (the fetch stage's Lua script writes the first three by name).
FIRST, CHANGES, ROUTE = "first", "changes", "route"


@dataclass(frozen=True, slots=True)
class NotificationEntry:
    tenant_id: str
    subscription_id: str = ""
    change_type: str = ""  # created | updated | deleted; empty for lifecycle events
    resource: str = ""  # e.g. Security/Alerts/{id}
    resource_id: str = ""  # resourceData.id
    odata_type: str = ""  # resourceData.@odata.type
    lifecycle_event: str = ""  # reauthorizationRequired | subscriptionRemoved | missed
    subscription_expires: str = ""  # subscriptionExpirationDateTime as Graph sent it
    received_at_ms: int = 0
    source: str = "push"  # push | poll | backfill
    resource_data: str = ""  # decrypted rich-notification content (JSON), when present

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": ENTRY_VERSION}
        for name in _NAMES:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_fields(self) -> dict[str, str]:
        return {FIELD: self.to_json()}

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> NotificationEntry:
        """Decode a stream entry; raises ValueError when it is not a valid entry."""
        value = raw.get(FIELD) if FIELD in raw else raw.get(FIELD.encode())  # type: ignore[call-overload]
        if value is None:
            raise ValueError("stream entry has no entry field")
        data = json.loads(value)
        if not isinstance(data, dict) or data.pop("v", None) != ENTRY_VERSION:
            raise ValueError("unknown entry version")
        unknown = set(data) - set(_NAMES)
        if unknown:
            raise ValueError(f"unknown entry fields: {', '.join(sorted(unknown))}")
        if not isinstance(data.get("tenant_id"), str):
            raise ValueError("entry has no tenant_id")
        if not isinstance(data.get("received_at_ms", 0), int):
            raise ValueError("received_at_ms is not an integer")
        return cls(**data)


_NAMES = tuple(f.name for f in fields(NotificationEntry))


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """An entry of the ``backfill`` stream: the supervisor asks the poller to re-read a tenant.

    Written after a ``missed`` lifecycle event, or when a subscription had to be recreated
    (removed by Graph, deleted behind our back, expired): notifications may have been lost
    between ``since`` and now. Plain stream fields (low volume, readable with redis-cli).
    """

    tenant_id: str
    reason: str  # missed | subscriptionRemoved | recreated | orphaned
    since: str  # ISO 8601 UTC: re-read changes from this time on
    subscription_id: str = ""  # the subscription the gap was found on, when there is one
    resource: str = ""
    requested_at: str = ""  # ISO 8601 UTC

    def to_fields(self) -> dict[str, str]:
        return {"v": str(ENTRY_VERSION), **{name: getattr(self, name) for name in _BACKFILL}}

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes] | Mapping[str, str]) -> BackfillRequest:
        """Decode a stream entry; raises ValueError when it is not a backfill request."""
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        if data.pop("v", None) != str(ENTRY_VERSION):
            raise ValueError("unknown entry version")
        unknown = set(data) - set(_BACKFILL)
        if unknown:
            raise ValueError(f"unknown entry fields: {', '.join(sorted(unknown))}")
        for required in ("tenant_id", "reason", "since"):
            if not data.get(required):
                raise ValueError(f"backfill request has no {required}")
        return cls(**data)


_BACKFILL = tuple(f.name for f in fields(BackfillRequest))


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """An alert on its way: the envelope JSON as the fetch stage wrote it, whether it is the
    first version routed (``first``), which material fields changed (``changes``) and, on a
    sink's stream and in its dead letters, the route that sent it there. The bytes are kept
    as read: each stage hands them on without decoding them again."""

    envelope: bytes
    first: bytes = b"1"
    changes: bytes = b""
    route: bytes = b""

    @classmethod
    def of(cls, fields: Mapping[bytes, bytes]) -> AlertEntry:
        return cls(
            fields.get(FIELD.encode(), b""),
            fields.get(FIRST.encode(), b"1"),
            fields.get(CHANGES.encode(), b""),
            fields.get(ROUTE.encode(), b""),
        )

    @property
    def is_update(self) -> bool:
        return self.first == b"0"

    @property
    def change_names(self) -> tuple[str, ...]:
        return tuple(c for c in self.changes.decode().split(",") if c)

    def to_fields(self, **extra: str | bytes) -> dict[FieldT, EncodableT]:
        """The stream fields, with the route when there is one, and ``extra`` (a sink
        stream's ``queued_at``, a dead letter's ``error`` and ``reason``...)."""
        out: dict[FieldT, EncodableT] = {
            FIELD: self.envelope,
            FIRST: self.first,
            CHANGES: self.changes,
        }
        if self.route:
            out[ROUTE] = self.route
        out.update(extra)
        return out

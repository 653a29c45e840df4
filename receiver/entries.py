"""Entries of the ``notifications`` and ``lifecycle`` streams, and their field codec.

An entry keeps what later stages need and nothing secret (never the clientState). Written by
the web (source ``push``) and the poller (source ``poll``); read by the fetch stage and the
subscription supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

ENTRY_VERSION = "1"


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

    def to_fields(self) -> dict[str, str]:
        out = {"v": ENTRY_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if value not in ("", 0):
                out[f.name] = str(value)
        return out

    @classmethod
    def from_fields(cls, raw: dict[bytes, bytes] | dict[str, str]) -> NotificationEntry:
        """Decode a stream entry; raises ValueError when it is not a valid entry."""
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                               else v) for k, v in raw.items()}
        if data.pop("v", None) != ENTRY_VERSION:
            raise ValueError("unknown entry version")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown entry fields: {', '.join(sorted(unknown))}")
        if "tenant_id" not in data:
            raise ValueError("entry has no tenant_id")
        kwargs: dict[str, object] = dict(data)
        if "received_at_ms" in data:
            kwargs["received_at_ms"] = int(data["received_at_ms"])
        return cls(**kwargs)  # type: ignore[arg-type]

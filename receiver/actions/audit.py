"""The audit trail of triage: every action link used (or refused) and every CLI update.

Each record goes to one Redis stream (``Keys.actions_audit``, newest last, capped) and, when it
names an alert, onto the alert's delivery timeline (``receiver alerts show ID``), in one
pipeline. A record says who (the signed-in user, or the name typed on the confirmation page
with the client address and user agent), what (action, alert, tenant), when, and Graph's
answer. It never holds the link's token: the nonce identifies the link without granting it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from redis.asyncio import Redis

from receiver.pipeline import records
from receiver.store.keys import Keys

__all__ = ["AuditRecord", "recent", "write"]

AUDIT_MAXLEN = 100_000
TIMELINE_EVENT = "action"
_FIELD = "r"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str  # take | resolve_true_positive | resolve_false_positive | update (CLI)
    outcome: str  # done | graph_refused | graph_unavailable | reused | expired | invalid |
    #               wrong_tenant | not_found | forbidden_origin | refused (already taken
    #               by someone else, or resolved); with sign-in also
    #               signin_required | forbidden_csrf | not_allowed | groups_overage |
    #               no_groups_claim | wrong_signin_tenant | signin_failed | signin_unavailable
    alert_id: str = ""
    tenant_id: str = ""
    source_api: str = ""
    via: str = "link"  # link | cli
    by: str = ""  # the person: the signed-in UPN, else the typed name (unverified)
    identity: str = ""  # with sign-in: the Entra ID account (name, object id, tenant)
    client: str = ""  # client address (and X-Forwarded-For as given, unverified)
    user_agent: str = ""
    changes: str = ""  # what was asked of Graph, e.g. status=resolved, classification=...
    graph: str = ""  # Graph's answer (HTTP status, or error code and message); for a
    #                  refused sign-in, why (Entra ID's error, or the check that failed)
    request_id: str = ""
    nonce: str = ""
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


async def write(redis: Redis, keys: Keys, record: AuditRecord) -> AuditRecord:
    """Store the record (stamped now) in the audit stream and on the alert's timeline."""
    if not record.at:
        record = AuditRecord(**{**asdict(record), "at": round(time.time(), 3)})
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(
            keys.actions_audit, {_FIELD: record.to_json()}, maxlen=AUDIT_MAXLEN, approximate=True
        )
        if record.alert_id and record.tenant_id:
            records.add(
                pipe,
                keys,
                record.tenant_id,
                record.alert_id,
                records.event(
                    TIMELINE_EVENT,
                    action=record.action,
                    outcome=record.outcome,
                    by=record.by,
                    via=record.via,
                    changes=record.changes,
                    detail=record.graph[:300],
                ),
            )
        await pipe.execute()
    return record


async def recent(redis: Redis, keys: Keys, count: int = 100) -> list[AuditRecord]:
    """The latest records, newest first."""
    entries: Any = await redis.xrevrange(keys.actions_audit, count=count)
    return [AuditRecord.from_json(f[_FIELD.encode()]) for _, f in entries]

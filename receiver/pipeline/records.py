"""Delivery records: per alert, what happened to it, when (kept with a TTL).

One Redis list per alert; each event is a small JSON object: routed, silenced, delivered,
retrying, dead-lettered, with the sink, attempt and a detail. `receiver alerts show ID` and
the status page read it. The route stage also keeps the envelopes of the latest alerts in a
capped stream (:func:`remember`): the pipeline streams delete what they handled, and the page
lists the last alerts and previews their cards from it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from receiver.store.entries import AlertEntry
from receiver.store.keys import Keys

DEFAULT_RETENTION_S = 14 * 24 * 3600
MAX_EVENTS = 200


def event(kind: str, **fields: Any) -> str:
    return json.dumps(
        {
            "at": round(time.time(), 3),
            "event": kind,
            **{k: v for k, v in fields.items() if v not in (None, "")},
        }
    )


def add(
    pipe: Pipeline | Redis,
    keys: Keys,
    tenant_id: str,
    alert_id: str,
    *events: str,
    retention_s: int = DEFAULT_RETENTION_S,
) -> None:
    """Queue the events on a pipeline (or client); the caller executes it."""
    key = keys.deliveries(tenant_id, alert_id)
    pipe.rpush(key, *events)
    pipe.ltrim(key, -MAX_EVENTS, -1)
    pipe.expire(key, retention_s)


async def record(
    redis: Redis,
    keys: Keys,
    tenant_id: str,
    alert_id: str,
    *events: str,
    retention_s: int = DEFAULT_RETENTION_S,
) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        add(pipe, keys, tenant_id, alert_id, *events, retention_s=retention_s)
        await pipe.execute()


async def timeline(redis: Redis, keys: Keys, tenant_id: str, alert_id: str) -> list[dict[str, Any]]:
    raw = await redis.lrange(keys.deliveries(tenant_id, alert_id), 0, -1)
    return [json.loads(r) for r in raw]


# The latest routed (or silenced) alerts, newest last: what the status page lists. Trimmed
# approximately, so Redis may keep up to one stream node (100 entries) more.
RECENT_MAXLEN = 200


def remember(pipe: Pipeline | Redis, keys: Keys, alert: AlertEntry) -> None:
    """Queue the alert on the recent-alerts stream (on the caller's pipeline)."""
    pipe.xadd(
        keys.recent_alerts,
        AlertEntry(alert.envelope, alert.first, alert.changes).to_fields(),
        maxlen=RECENT_MAXLEN,
        approximate=True,
    )


async def recent(redis: Redis, keys: Keys, count: int) -> list[tuple[str, dict[bytes, bytes]]]:
    """The ``count`` latest remembered alerts, newest first: (stream id, fields)."""
    entries: Any = await redis.xrevrange(keys.recent_alerts, count=count)
    return [(entry_id.decode(), fields) for entry_id, fields in entries]

"""Post-back: an alert changed by an action or ``receiver alerts update`` goes through the
pipeline again, so the channels and tickets that got it get an update message.

The alert as Graph returned it after the update is queued on ``notifications`` like a poll
item (``source: action``). The fetch stage's version-aware dedup and material-change detection
do the rest: the change (status, classification, assignee) is routed to the alert's sinks as
an update, once, even when the poller or a Graph notification brings the same version later.
Without this, alerts_v2 changes would wait for the next poll and legacy alerts might never
come back (a subscription filtered on ``status eq 'newAlert'`` is not told about them).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.actions.updates import PATHS
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys

log = logging.getLogger(__name__)


async def queue_changed(
    redis: Redis, keys: Keys, tenant_id: str, source_api: str, alert: dict[str, Any]
) -> bool:
    """Queue the updated alert for the pipeline; False (logged) if Redis refused."""
    alert_id = str(alert.get("id") or "")
    if not alert_id or source_api not in PATHS:
        return False
    entry = NotificationEntry(
        tenant_id=tenant_id,
        change_type="updated",
        resource=f"{PATHS[source_api]}/{alert_id}",
        resource_id=alert_id,
        received_at_ms=int(time.time() * 1000),
        source="action",
        resource_data=json.dumps(alert, separators=(",", ":")),
    )
    try:
        await redis.xadd(keys.notifications, entry.to_fields())  # type: ignore[arg-type]
    except (RedisError, OSError):
        log.warning(
            "could not queue the updated alert; the poller will pick it up",
            extra={"alert_id": alert_id, "tenant_id": tenant_id},
        )
        return False
    return True

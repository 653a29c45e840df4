"""The fetch stage: notification -> full alert from Graph -> envelope -> ``alerts`` stream.

- Push entries name an alert; it is fetched (legacy or v2 by its resource) through the Graph
  client and its rate limiter. Poll entries carry the alert as the poller read it.
- Version-aware dedup: an alert version (tenant, alert id, last-updated) passes once while its
  record lives (the dedup window); an older version arriving after a newer one is dropped too.
  So Graph's duplicate notifications, its retries and push+poll overlap make one alert per real
  change. The check, the record and the XADD to ``alerts`` are one Lua script: a version is
  never marked seen without being handed on, nor handed on twice.
- Material-change detection: the record keeps the material fields of the last version routed;
  the envelope says whether this is the first version and which of them changed.
- An alert that no longer exists (404) is recorded and dropped, not retried forever.
- Resources are parsed strictly (:mod:`receiver.graph.resources`): a known collection and one
  id, the id quoted as a path segment. Anything else is refused before any Graph call,
  counted (``receiver_fetch_outcomes_total{outcome="refused_resource"}``) and kept in the
  poison stream: a notification must not choose the path read with the app's token.
- Content an entry carries is bound to it: its ``id`` must be the resource's id (and the
  notification's ``resourceData.id``), else the entry is refused
  (``outcome="refused_content"``). Poll, backfill and action entries carry what this
  deployment read from Graph with its own token, and are used as read. A push entry's content
  (decrypted rich-notification ``encryptedContent``) is not trusted as the alert: the alert is
  re-read from Graph, as for every other notification (docs/SECURITY.md says why).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from receiver import clock
from receiver.config.settings import Settings
from receiver.envelope import MATERIAL_FIELDS, Envelope, from_incident, from_legacy, from_v2
from receiver.graph.client import GraphError
from receiver.graph.resources import AlertResource, BadResource, parse_resource
from receiver.pipeline import records
from receiver.pipeline.consumer import Entry, Poison
from receiver.store.entries import AlertEntry, NotificationEntry
from receiver.store.keys import Keys

if TYPE_CHECKING:
    from receiver.pipeline.route import Handoff, RouteStage

log = logging.getLogger(__name__)

DEFAULT_DEDUP_WINDOW_S = 7 * 24 * 3600
# Entry sources whose content this deployment read from Graph itself, with its own token.
READ_BY_US = frozenset({"poll", "backfill", "action"})
SEEN_EVERY_S = 60.0  # how often a subscription's last push (a tenant's last poll) is noted
ALERTS_STREAM_MAXLEN = 1_000_000  # a guard against unbounded growth; consumers keep it short

# KEYS[1] dedup record, KEYS[2] alerts stream, KEYS[3] the notifications stream; for a
# hand-off (ARGV[8] not ''): KEYS[4] the alert's delivery record, KEYS[5] the recent-alerts
# stream, KEYS[6..] the sink streams.
# ARGV[1] version, ARGV[2] material JSON, ARGV[3] record TTL (s), ARGV[4] envelope JSON,
# ARGV[5] stream MAXLEN guard, ARGV[6] consumer group, ARGV[7] the notification's entry id
# ('' for none), ARGV[8] the hand-off ('' for none: the alert goes to the alerts stream) as
# JSON {routes, queued_at, first, update (the timeline events for each case), max_events,
# retention, recent}, ARGV[9..] the material field names. The notification is acknowledged
# last, in the same step, whatever the verdict (a script that fails half-way acknowledges
# nothing). Returns 0 for a duplicate or stale version, 1 when handed on.
_DEDUP_AND_ENQUEUE = """
local function ack()
  if ARGV[7] ~= '' then
    redis.call('XACK', KEYS[3], ARGV[6], ARGV[7])
    redis.call('XDEL', KEYS[3], ARGV[7])
  end
end
local old = redis.call('GET', KEYS[1])
local first = '1'
local changes = {}
if old then
  local rec = cjson.decode(old)
  if rec['v'] >= ARGV[1] then
    ack()
    return 0
  end
  first = '0'
  local prev = cjson.decode(rec['m'])
  local cur = cjson.decode(ARGV[2])
  for i = 9, #ARGV do
    if prev[ARGV[i]] ~= cur[ARGV[i]] then
      table.insert(changes, ARGV[i])
    end
  end
end
redis.call('SET', KEYS[1], cjson.encode({v = ARGV[1], m = ARGV[2]}), 'EX', ARGV[3])
changes = table.concat(changes, ',')
if ARGV[8] == '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[4], 'first', first,
             'changes', changes)
else
  local h = cjson.decode(ARGV[8])
  for i, route in ipairs(h['routes']) do
    redis.call('XADD', KEYS[5 + i], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[4], 'first', first,
               'changes', changes, 'route', route, 'queued_at', h['queued_at'])
  end
  redis.call('RPUSH', KEYS[4], unpack(first == '1' and h['first'] or h['update']))
  redis.call('LTRIM', KEYS[4], -h['max_events'], -1)
  redis.call('EXPIRE', KEYS[4], h['retention'])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', h['recent'], '*', 'e', ARGV[4], 'first', first,
             'changes', changes)
end
ack()
return 1
"""


class AlertSource(Protocol):
    """What the fetch stage needs of the Graph client."""

    async def get(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]: ...


NORMALISERS: dict[str, Callable[[dict[str, Any], str], Envelope]] = {
    "security/alerts_v2": from_v2,
    "security/incidents": from_incident,
    "security/alerts": from_legacy,
}


class FetchStage:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        graph: AlertSource,
        *,
        dedup_window_s: int = DEFAULT_DEDUP_WINDOW_S,
        registry: CollectorRegistry | None = None,
        route: RouteStage | None = None,
    ) -> None:
        self.redis = redis
        # The route stage of this process: an alert it lets through as it is goes from here
        # straight to the sinks' streams (RouteStage.handoff), in the dedup's own step.
        self.route = route
        self.keys = keys
        self.graph = graph
        self.tenants = {t.tenant_id: t.name for t in settings.tenants}
        self.dedup_window_s = dedup_window_s
        self._script = redis.register_script(_DEDUP_AND_ENQUEUE)
        self.outcomes = Counter(
            "receiver_fetch_outcomes", "Fetch stage outcomes", ["outcome"], registry=registry
        )
        self._seen_written: dict[tuple[str, str], float] = {}

    async def handle(self, entry: Entry) -> None:
        try:
            note = NotificationEntry.from_fields(entry.fields)
        except (ValueError, TypeError) as exc:
            raise Poison(f"not a notification entry: {exc}") from None
        tenant = self.tenants.get(note.tenant_id)
        if tenant is None:
            raise Poison(f"tenant {note.tenant_id} is not configured")
        await self._note_seen(note)
        try:
            resource = parse_resource(note.resource)
        except BadResource as exc:
            self._refuse("refused_resource", note, str(exc))
        if note.resource_id and note.resource_id != resource.id:
            self._refuse("refused_resource", note, "resourceData.id is not the resource's id")
        if note.change_type == "deleted":
            self.outcomes.labels("deleted").inc()
            return
        alert = await self._alert(note, resource)
        if alert is None:
            return
        envelope = NORMALISERS[resource.collection](alert, tenant)
        if not envelope.id or envelope.tenant_id != note.tenant_id:
            raise Poison("the fetched alert does not match its notification")
        route = self.route
        handoff = await route.handoff(envelope) if route is not None else None
        passed = await self.dedup_and_enqueue(envelope, entry, handoff)
        if passed and route is not None and handoff is not None:
            route.handed_off(envelope, handoff)

    async def _note_seen(self, note: NotificationEntry) -> None:
        """Note that a subscription pushed, or that the poller found a change in a tenant, at
        most once a minute for each (a push subscription silent while the poller finds
        changes is reported: receiver.store.registry.silent)."""
        if note.source == "push" and note.subscription_id and not note.lifecycle_event:
            key, field = self.keys.push_seen, note.subscription_id
        elif note.source == "poll":
            key, field = self.keys.poll_seen, note.tenant_id
        else:
            return
        now = time.time()
        if now - self._seen_written.get((key, field), 0.0) < SEEN_EVERY_S:
            return
        self._seen_written[(key, field)] = now
        await self.redis.hset(key, field, str(int(now * 1000)))

    def _refuse(self, outcome: str, note: NotificationEntry, why: str) -> NoReturn:
        """Count and refuse an entry without calling Graph (Poison: kept for a human)."""
        self.outcomes.labels(outcome).inc()
        log.warning(
            "notification refused (%s): %s",
            outcome,
            why,
            extra={
                "tenant_id": note.tenant_id,
                "subscription_id": note.subscription_id,
                "reason": outcome,
            },
        )
        raise Poison(f"{outcome}: {why}")

    async def _alert(
        self, note: NotificationEntry, resource: AlertResource
    ) -> dict[str, Any] | None:
        if note.resource_data:
            try:
                data = json.loads(note.resource_data)
            except ValueError:
                data = None
            if not isinstance(data, dict) or str(data.get("id") or "") != resource.id:
                self._refuse(
                    "refused_content",
                    note,
                    "the content's id is not the notification's resource id",
                )
            if note.source in READ_BY_US:
                return data
            # A push entry's (decrypted) content: bound to its notification above, and
            # re-read all the same (docs/SECURITY.md: what is trusted and why).
        path = resource.path
        try:
            return await self.graph.get(note.tenant_id, path)
        except GraphError as exc:
            if exc.status == 404:
                self.outcomes.labels("gone").inc()
                log.info(
                    "alert no longer exists: %s",
                    path,
                    extra={"tenant_id": note.tenant_id, "alert_id": note.resource_id},
                )
                return None
            if exc.status in (400, 403):
                raise Poison(str(exc)) from None
            raise

    async def dedup_and_enqueue(
        self, envelope: Envelope, entry: Entry | None = None, handoff: Handoff | None = None
    ) -> bool:
        """Hand the envelope on unless this version was seen; True if handed. It goes to the
        route stage, or with ``handoff`` straight to the sinks' streams with its timeline
        events and its place among the recent alerts (what the route stage would write).
        The check, the record, the XADDs and the acknowledgement of ``entry`` (the
        notification) happen atomically in Redis."""
        version = clock.canonical(envelope.version)
        ack_keys, ack_args = (
            entry.ack_script_args(self.keys.alerts)
            if entry is not None
            else ([self.keys.alerts], ["", ""])
        )
        keys = [self.keys.dedup(envelope.tenant_id, envelope.id), self.keys.alerts, *ack_keys]
        plan = ""
        if handoff is not None:
            keys += [
                self.keys.deliveries(envelope.tenant_id, envelope.id),
                self.keys.recent_alerts,
                *handoff.streams,
            ]
            plan = json.dumps(
                {
                    "routes": handoff.routes,
                    "queued_at": str(int(time.time() * 1000)),
                    "first": handoff.first_events,
                    "update": handoff.update_events,
                    "max_events": records.MAX_EVENTS,
                    "retention": records.DEFAULT_RETENTION_S,
                    "recent": records.RECENT_MAXLEN,
                }
            )
        passed = await self._script(
            keys=keys,
            args=[
                version,
                json.dumps(envelope.material(), sort_keys=True),
                self.dedup_window_s,
                envelope.to_json(),
                ALERTS_STREAM_MAXLEN,
                *ack_args,
                plan,
                *MATERIAL_FIELDS,
            ],
        )
        self.outcomes.labels("passed" if passed else "duplicate").inc()
        return bool(passed)


def envelope_of(entry: Entry) -> Envelope:
    """The envelope of an ``alerts`` entry, marked as an update when it is one."""
    alert = AlertEntry.of(entry.fields)
    envelope = Envelope.from_json(alert.envelope)
    return envelope.as_update(alert.change_names) if alert.is_update else envelope

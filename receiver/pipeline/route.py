"""The route stage: ``alerts`` -> the rule tree and silences -> ``sink:<name>`` streams.

The copies for every chosen sink are written in one transaction with the delivery record, so
a retry after a crash cannot deliver to some sinks twice and others never. A route with
``group_by`` adds the alert to its group instead (same transaction); the group's message
reaches the sink's stream when it is due (:mod:`receiver.pipeline.grouping`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from receiver import clock
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.coalesce import Transactions
from receiver.pipeline.consumer import Entry, Poison
from receiver.pipeline.fetch import envelope_of
from receiver.pipeline.grouping import Groups
from receiver.routing.config import Route, RoutesConfig
from receiver.routing.grouping import GROUPED_KINDS
from receiver.routing.silences import Silence, silenced_by
from receiver.routing.tree import Decision, route
from receiver.store.entries import AlertEntry
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

SILENCE_CACHE_S = 5.0
SINK_STREAM_MAXLEN = 1_000_000
# Envelope fields that depend on the alert's earlier versions, known only once the fetch
# stage's dedup has run: a rule or silence that matches on them leaves routing to this stage.
VERSION_FIELDS = frozenset({"first_seen", "changes"})


@dataclass(frozen=True)
class Handoff:
    """An alert the fetch stage hands straight to its sinks' streams (see
    :meth:`RouteStage.handoff`): the streams, the route that chose each, and the events for
    the alert's timeline, as a first version and as an update (the dedup, which runs with
    the hand-off, tells which it is)."""

    sinks: tuple[str, ...]
    streams: tuple[str, ...]
    routes: tuple[str, ...]
    first_events: tuple[str, ...]
    update_events: tuple[str, ...]


def _groups(decision: Decision, envelope: Envelope) -> bool:
    """Whether the decision puts the alert in a group rather than sending it on."""
    return decision.grouped and envelope.kind in GROUPED_KINDS


def _routed_event(decision: Decision, envelope: Envelope, *, update: bool) -> str:
    """The timeline event of an alert queued for a sink (by this stage or its hand-off)."""
    return records.event(
        "routed",
        sink=decision.sink,
        route=decision.route,
        version=envelope.version,
        update=update or None,
    )


def _names(route: Route) -> set[str]:
    """Every field name a matcher of the tree looks at."""
    names = {m.name for m in route.matchers}
    for child in route.routes:
        names |= _names(child)
    return names


async def load_silences(redis: Redis, keys: Keys) -> list[Silence]:
    out = []
    for raw in (await redis.hgetall(keys.silences)).values():
        try:
            out.append(Silence.from_json(raw))
        except (ValueError, KeyError):
            log.warning("unreadable silence skipped")
    return out


async def save_silence(redis: Redis, keys: Keys, silence: Silence) -> None:
    await redis.hset(keys.silences, silence.id, silence.to_json())


async def expire_silence(redis: Redis, keys: Keys, silence_id: str) -> bool:
    return bool(await redis.hdel(keys.silences, silence_id))


class RouteStage:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        routes: RoutesConfig,
        sinks: set[str],
        *,
        groups: Groups | None = None,
        registry: CollectorRegistry | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        self.redis = redis
        # Hand-offs of entries routed in the same turn go to Redis as one transaction.
        self.transactions = transactions or Transactions(redis)
        self.groups = groups or Groups(redis, keys, sinks=sinks, registry=registry)
        self.keys = keys
        self.routes = routes
        self.sinks = sinks
        self._silences: list[Silence] = []
        self._silences_at = float("-inf")
        self.outcomes = Counter(
            "receiver_route_outcomes", "Route stage outcomes", ["outcome"], registry=registry
        )
        self._version_blind = not (_names(routes.route) & VERSION_FIELDS)

    async def handoff(self, envelope: Envelope) -> Handoff | None:
        """Where the fetch stage may hand ``envelope`` (a first version, before its dedup)
        straight to, without the ``alerts`` stream and this stage's read of it: the sink
        streams its routes choose, when every route sends it as it is and no silence holds
        it. None when this stage must decide after the dedup: a route that groups it, an
        active silence that matches it, no route at all, or rules or silences that look at
        ``first_seen`` or ``changes`` (which only the dedup knows)."""
        if not self._version_blind:
            return None
        silences = await self._active_silences()
        if any(m.name in VERSION_FIELDS for s in silences for m in s.matchers):
            return None
        if silenced_by(envelope, silences, clock.now()) is not None:
            return None
        decisions = self._decisions(envelope)
        if not decisions or any(_groups(d, envelope) for d in decisions):
            return None
        return Handoff(
            tuple(d.sink for d in decisions),
            tuple(self.keys.sink(d.sink) for d in decisions),
            tuple(d.route for d in decisions),
            tuple(_routed_event(d, envelope, update=False) for d in decisions),
            tuple(_routed_event(d, envelope, update=True) for d in decisions),
        )

    def handed_off(self, envelope: Envelope, handoff: Handoff) -> None:
        """Count an alert the fetch stage handed to its sinks (as :meth:`handle` counts)."""
        self.outcomes.labels("routed").inc()
        self._log_routed(envelope, handoff.sinks)

    def _decisions(self, envelope: Envelope) -> list[Decision]:
        return [d for d in route(self.routes.route, envelope) if d.sink in self.sinks]

    async def _active_silences(self) -> list[Silence]:
        if time.monotonic() - self._silences_at > SILENCE_CACHE_S:
            self._silences = await load_silences(self.redis, self.keys)
            self._silences_at = time.monotonic()
        return self._silences

    async def handle(self, entry: Entry) -> None:
        try:
            envelope = envelope_of(entry)
        except (ValueError, TypeError, KeyError) as exc:
            raise Poison(f"not an alert envelope: {exc}") from None
        silence = silenced_by(envelope, await self._active_silences(), clock.now())
        if silence is not None:
            self.outcomes.labels("silenced").inc()
            async with self.redis.pipeline(transaction=True) as pipe:
                records.add(
                    pipe,
                    self.keys,
                    envelope.tenant_id,
                    envelope.id,
                    records.event("silenced", silence=silence.id, version=envelope.version),
                )
                records.remember(pipe, self.keys, AlertEntry.of(entry.fields))
                await self.transactions.execute(pipe)
            return
        decisions = self._decisions(envelope)
        alert = AlertEntry.of(entry.fields)
        events = []
        queued_at = str(int(time.time() * 1000))
        member_json = ""
        async with self.redis.pipeline(transaction=True) as pipe:
            for d in decisions:
                if _groups(d, envelope):
                    # Members are kept without Graph's body: a group can hold many.
                    member_json = member_json or replace(envelope, raw={}).to_json()
                    gid = await self.groups.add(pipe, d, envelope, member_json)
                    events.append(
                        records.event(
                            "grouped",
                            sink=d.sink,
                            route=d.route,
                            group=gid,
                            version=envelope.version,
                        )
                    )
                    continue
                pipe.xadd(
                    self.keys.sink(d.sink),
                    alert.to_fields(route=d.route, queued_at=queued_at),
                    maxlen=SINK_STREAM_MAXLEN,
                    approximate=True,
                )
                events.append(_routed_event(d, envelope, update=envelope.is_update))
            if not decisions:
                events.append(records.event("unrouted", version=envelope.version))
            records.add(pipe, self.keys, envelope.tenant_id, envelope.id, *events)
            entry.ack_with(pipe)
            records.remember(pipe, self.keys, alert)
            await self.transactions.execute(pipe)
        self.outcomes.labels("routed" if decisions else "unrouted").inc()
        self._log_routed(envelope, [d.sink for d in decisions])

    @staticmethod
    def _log_routed(envelope: Envelope, sinks: Sequence[str]) -> None:
        if log.isEnabledFor(logging.DEBUG):  # (not worth a JSON pass per alert otherwise)
            log.debug(
                "routed to %s",
                json.dumps(list(sinks)),
                extra={"alert_id": envelope.id, "tenant_id": envelope.tenant_id},
            )

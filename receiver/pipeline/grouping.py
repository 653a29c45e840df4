"""Groups in Redis: the route stage adds alerts to them, the flusher sends them when due.

A group (see :mod:`receiver.routing.grouping`) is three keys and an entry in one sorted set:

- ``group:<gid>:members``  hash, alert -> its latest envelope (an update replaces it);
- ``group:<gid>:changed``  set, the members new or changed since the last message;
- ``group:<gid>:meta``     hash: sink, route, labels, started, last_sent, sent (messages so
  far), version (bumped by every add), interval and repeat (ms);
- ``groups:due``           sorted set, gid -> when its next message is due (ms).

Adding (one script, inside the route stage's transaction, so an alert is either in its groups
and its other sinks' streams or nowhere): store the member, mark it changed, and move the due
time earlier if needed: ``started + group_wait`` for a group not sent yet, else
``max(now, last_sent + group_interval)``.

Flushing (any worker; several may race): read the group, build its message in Python, then
one script checks that the group is still due and that ``version`` and ``sent`` are what was
read -- nothing was added and nobody else sent it meanwhile -- and only then XADDs the message
to the sink's stream and clears ``changed``. A lost race leaves everything as it was for the
next pass; a crash between the read and the script loses nothing. After a message, the group
is due again after ``repeat_interval`` (a reminder) while some member is not resolved; a group
whose members are all resolved is closed, and the next alert with the same labels starts a
new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from receiver import backoff
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.routing.grouping import all_resolved, group_id, group_labels, summarize
from receiver.routing.tree import Decision
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

SINK_STREAM_MAXLEN = 1_000_000
MIN_RETENTION_S = 24 * 3600  # a quiet group is forgotten after this (or 2 x its intervals)
FLUSH_BATCH = 100

# KEYS: members, changed, meta, due. ARGV: member, envelope, now, wait, interval, repeat,
# gid, retention s, sink, route, labels. -> the due time (ms).
_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'version', 1)
local now = tonumber(ARGV[3])
if redis.call('HSETNX', KEYS[3], 'started', ARGV[3]) == 1 then
  redis.call('HSET', KEYS[3], 'sink', ARGV[9], 'route', ARGV[10], 'labels', ARGV[11], 'sent', 0)
end
redis.call('HSET', KEYS[3], 'interval', ARGV[5], 'repeat', ARGV[6], 'retention', ARGV[8])
local last = tonumber(redis.call('HGET', KEYS[3], 'last_sent') or '')
local due
if last then
  due = math.max(now, last + tonumber(ARGV[5]))
else
  due = tonumber(redis.call('HGET', KEYS[3], 'started')) + tonumber(ARGV[4])
end
local current = redis.call('ZSCORE', KEYS[4], ARGV[7])
if (not current) or tonumber(current) > due then
  redis.call('ZADD', KEYS[4], due, ARGV[7])
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[8]) end
return due
"""

# KEYS: members, changed, meta, due, sink stream. ARGV: gid, version, sent, now, next due
# (0: none), close (1/0), retention s, maxlen, e, first, changes, route, queued_at.
# -> 1 sent, 0 the group changed, was sent meanwhile, or is no longer due.
_COMMIT = """
local due = redis.call('ZSCORE', KEYS[4], ARGV[1])
if (not due) or tonumber(due) > tonumber(ARGV[4]) then return 0 end
if redis.call('HGET', KEYS[3], 'version') ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[3], 'sent') ~= ARGV[3] then return 0 end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[9], 'first', ARGV[10],
           'changes', ARGV[11], 'route', ARGV[12], 'queued_at', ARGV[13], 'group', ARGV[1])
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'last_sent', ARGV[4], 'sent', tonumber(ARGV[3]) + 1)
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
return 1
"""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def retention_s(decision: Decision) -> int:
    return int(max(MIN_RETENTION_S, 2 * decision.group_interval_s, 2 * decision.repeat_interval_s))


def _member(envelope: Envelope) -> str:
    return f"{envelope.tenant_id}/{envelope.id}"


class Groups:
    """Adds alerts to groups (route stage) and sends the groups that are due (flusher)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        sinks: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.sinks = sinks
        self.clock = clock
        self._add = redis.register_script(_ADD)
        self._commit = redis.register_script(_COMMIT)
        self.outcomes = Counter(
            "receiver_group_messages",
            "Group messages by outcome: sent "
            "(a new or updated group), reminder, closed (all resolved), "
            "lost_race (another worker sent it), dropped (its sink is "
            "gone from the config)",
            ["outcome"],
            registry=registry,
        )

    def _keys(self, gid: str) -> list[str]:
        k = self.keys
        return [k.group_members(gid), k.group_changed(gid), k.group_meta(gid), k.groups_due]

    async def add(
        self, pipe: Pipeline, decision: Decision, envelope: Envelope, envelope_json: str
    ) -> str:
        """Queue the alert's addition to its group on ``pipe``; return the group id."""
        labels = group_labels(decision.group_by, envelope)
        gid = group_id(decision.sink, decision.route, labels)
        await self._add(
            keys=self._keys(gid),
            args=[
                _member(envelope),
                envelope_json,
                _ms(self.clock()),
                _ms(decision.group_wait_s),
                _ms(decision.group_interval_s),
                _ms(decision.repeat_interval_s),
                gid,
                retention_s(decision),
                decision.sink,
                decision.route,
                json.dumps(labels, separators=(",", ":")),
            ],
            client=pipe,
        )
        return gid

    async def flush_due(self) -> int:
        """Send every group that is due now; return how many messages were sent."""
        now = _ms(self.clock())
        gids = await self.redis.zrangebyscore(
            self.keys.groups_due, "-inf", now, start=0, num=FLUSH_BATCH
        )
        sent = 0
        for raw in gids:
            gid = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                sent += await self._flush(gid, now)
            except Exception:
                # One broken group must not stop the others; it stays due and is retried.
                log.exception("sending group %s failed", gid)
        return sent

    async def _flush(self, gid: str, now: int) -> int:
        members_key, changed_key, meta_key, due_key = self._keys(gid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(meta_key)
            pipe.hgetall(members_key)
            pipe.smembers(changed_key)
            meta_raw, members_raw, changed_raw = await pipe.execute()
        meta = {k.decode(): v.decode() for k, v in meta_raw.items()}
        if "sink" not in meta or not members_raw:
            await self.redis.zrem(due_key, gid)  # expired or emptied: nothing to send
            return 0
        sink = meta["sink"]
        if self.sinks is not None and sink not in self.sinks:
            log.error("group %s dropped: sink %r is no longer configured", gid, sink)
            self.outcomes.labels("dropped").inc()
            await self.redis.zrem(due_key, gid)
            return 0
        members: dict[str, Envelope] = {}
        for key, value in members_raw.items():
            try:
                members[key.decode()] = Envelope.from_json(value)
            except (ValueError, TypeError, KeyError):
                log.error("group %s: an unreadable member was left out", gid)
        if not members:
            await self.redis.zrem(due_key, gid)
            return 0
        sent_before = int(meta.get("sent", "0"))
        changed = [members[c.decode()].id for c in changed_raw if c.decode() in members]
        message = summarize(
            gid,
            int(meta["started"]),
            now,
            json.loads(meta["labels"]),
            list(members.values()),
            changed,
            first=sent_before == 0,
        )
        close = all_resolved(list(members.values()))
        repeat = int(meta.get("repeat", "0"))
        next_due = now + repeat if repeat > 0 and not close else 0
        ok = await self._commit(
            keys=[*self._keys(gid), self.keys.sink(sink)],
            args=[
                gid,
                meta.get("version", ""),
                meta.get("sent", ""),
                now,
                next_due,
                "1" if close else "0",
                int(meta.get("retention", 0)) or MIN_RETENTION_S,
                SINK_STREAM_MAXLEN,
                message.to_json(),
                "1" if message.first_seen else "0",
                ",".join(message.changes),
                meta["route"],
                str(now),
            ],
        )
        if not ok:
            self.outcomes.labels("lost_race").inc()
            return 0
        outcome = (
            "closed" if close else ("reminder" if message.changes == ("reminder",) else "sent")
        )
        self.outcomes.labels(outcome).inc()
        async with self.redis.pipeline(transaction=False) as pipe:
            records.add(
                pipe,
                self.keys,
                message.tenant_id,
                message.id,
                records.event(
                    "routed",
                    sink=sink,
                    route=meta["route"],
                    version=message.version,
                    members=len(members),
                    update=message.is_update or None,
                ),
            )
            for member in members.values():
                if member.id in changed:
                    records.add(
                        pipe,
                        self.keys,
                        member.tenant_id,
                        member.id,
                        records.event("group_sent", sink=sink, group=message.id),
                    )
            await pipe.execute()
        return 1

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """Flush due groups until ``stop``."""
        while not stop.is_set():
            try:
                await self.flush_due()
            except Exception:
                log.exception("group flush pass failed")
            await backoff.pause(stop, interval_s)


__all__ = ["Groups"]

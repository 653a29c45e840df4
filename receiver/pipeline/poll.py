"""The poll stage: the leader decides which tenant is due, any worker polls it.

One process cannot poll an MSSP's thousand tenants every 10 s (about 200 Graph GETs a second
at ~150 ms each), so the scheduler's leader no longer reads Graph for the poller. It only
decides which (tenant, source) is due and queues a *poll job* on the ``poll`` stream; every
worker process (``receiver worker``, and ``receiver serve``) reads that stream through the same
consumer group machinery as the pipeline stages (:class:`receiver.pipeline.consumer.Consumer`),
so more worker processes, on this machine or others on the same Redis, poll more tenants.

- **Due.** Each (tenant, source) has a fixed phase inside its interval (a hash of its name),
  so a thousand tenants make an even 200 jobs a second instead of a burst every 10 s. A new
  leader starts from the next slot of each phase (no burst at a failover).
- **One poll per tenant and source at a time, across the deployment.** A marker key per
  (tenant, source) holds the stream id of its outstanding job, written by the same script as
  the job. The leader queues a job only when the marker's entry is gone from the stream
  (acknowledged, or lost with a Redis that restarted empty, or poisoned), so a job that is
  still queued, in flight, or pending after its worker died is never queued twice. The job
  carries the watermark as the leader read it in that script: nothing else moves it while
  the job is outstanding.
- **Ownership is the lease.** The job's pending entry belongs to one consumer. While it reads
  Graph the worker keeps the entry fresh (``XCLAIM`` to itself, only while it still owns it),
  so the consumer loop's ``XAUTOCLAIM`` takes it over only from a worker that stopped: killed,
  or stalled past ``worker.poll_visibility_timeout_s``. Every write of a job (its items into
  ``notifications``, then the watermark with the acknowledgement) is a script that first
  checks the entry is still pending to this consumer: a worker that wakes up after its job
  was taken over writes nothing and stops. What remains is the one Graph request it may have
  had in flight, as with the scheduler's fencing token.
- **Crash-safe.** A worker killed mid-poll leaves the entry pending; another worker claims
  it after the visibility timeout and reads again from the job's watermark, which had not
  moved: what the dead worker queued is read again (the fetch stage's dedup drops it), which
  is the overlap a crash always cost; nothing is skipped.
- **Failures.** A Graph error ends the job without moving the watermark (logged, counted);
  the next slot reads from the same place. The per-tenant rate limiter sits in the Graph
  client, in Redis, so it is shared by every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from receiver.config.settings import Settings
from receiver.graph.poller import SOURCES, Poller, entry_fields
from receiver.pipeline.consumer import Entry, Poison
from receiver.store.entries import ENTRY_VERSION, FIELD
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

POLL_GROUP = "poll"
Now = Callable[[], float]

# One call for every unit due at a tick (one round trip, and a script is the same on a
# Redis Cluster: all keys share the prefix's hash tag).
# KEYS: poll stream, then per unit its job marker and its watermark.
# ARGV: job version, then per unit tenant, source, due (ms).
# -> per unit 1 queued, 0 its last job is still in the stream (queued, or pending).
_ENQUEUE = """
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local marker = KEYS[2 * i]
  local job = redis.call('GET', marker)
  if job and #redis.call('XRANGE', KEYS[1], job, job) > 0 then
    out[i] = 0
  else
    local mark = redis.call('GET', KEYS[2 * i + 1]) or ''
    local id = redis.call('XADD', KEYS[1], '*', 'v', ARGV[1], 'tenant_id', ARGV[3 * i - 1],
                          'source', ARGV[3 * i], 'watermark', mark, 'due_ms', ARGV[3 * i + 1])
    redis.call('SET', marker, id)
    out[i] = 1
  end
end
return out
"""
BATCH = 500  # units per enqueue call
_OWNED = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
"""
# KEYS: poll stream. ARGV: group, job id, consumer. -> 1 kept fresh, 0 no longer ours.
_TOUCH = (
    _OWNED
    + """
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""
)
# KEYS: poll stream, notifications. ARGV: group, job id, consumer, entry values...
_QUEUE = (
    _OWNED
    + f"""
for i = 4, #ARGV do redis.call('XADD', KEYS[2], '*', '{FIELD}', ARGV[i]) end
return 1
"""
)
# KEYS: poll stream, job marker, watermark. ARGV: group, job id, consumer, new watermark or ''.
_FINISH = (
    _OWNED
    + """
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""
)


class JobLost(Exception):
    """This worker no longer owns the poll job (another took it over): write nothing more."""


@dataclass(frozen=True, slots=True)
class PollJob:
    """An entry of the ``poll`` stream (plain fields, readable with redis-cli)."""

    tenant_id: str
    source: str
    watermark: str  # as stored when the job was queued; empty before the first poll
    due_ms: int

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes]) -> PollJob:
        """Decode a stream entry; raises ValueError when it is not a poll job."""
        data = {k.decode(): v.decode() for k, v in raw.items()}
        if data.get("v") != str(ENTRY_VERSION):
            raise ValueError("unknown poll job version")
        if data.get("source") not in SOURCES:
            raise ValueError(f"unknown poll source {data.get('source')!r}")
        if not data.get("tenant_id"):
            raise ValueError("poll job has no tenant_id")
        try:
            due_ms = int(data.get("due_ms", "0"))
        except ValueError:
            raise ValueError("poll job due_ms is not an integer") from None
        return cls(data["tenant_id"], data["source"], data.get("watermark", ""), due_ms)


def phase(tenant_id: str, source: str, interval_s: float) -> float:
    """Where in its interval a (tenant, source) is polled: the same in every process."""
    return zlib.crc32(f"{tenant_id}:{source}".encode()) / 2**32 * interval_s


class Planner:
    """The leader's part: queue a poll job for each (tenant, source) when due."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        now: Now = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.now = now
        self.registry = registry if registry is not None else CollectorRegistry()
        self._enqueue = redis.register_script(_ENQUEUE)
        self.queued = Counter(
            "receiver_poll_jobs_queued",
            "Poll jobs the leader queued",
            ["source"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "receiver_poll_jobs_skipped",
            "Times a (tenant, source) was due while its last "
            "job was still queued or being read (it is queued once that one is done)",
            ["source"],
            registry=self.registry,
        )
        self.overdue = Gauge(
            "receiver_poll_overdue_seconds",
            "How long past its due time the most overdue "
            "(tenant, source) waits for its last job to finish (keep it under the interval)",
            registry=self.registry,
        )
        self.units = [
            (t.tenant_id, s, t.poll.interval_s)
            for t in settings.tenants
            for s in SOURCES
            if getattr(t.poll, s)
        ]
        # (next due, tenant, source, interval, first due of a waiting job or 0)
        self._heap: list[tuple[float, str, str, float, float]] = []
        self._last_tick = float("-inf")

    @property
    def tick_s(self) -> float:
        """How often the leader looks for due work: a small part of the shortest interval."""
        return min([0.5, *(i / 20 for _, _, i in self.units)])

    def _schedule(self, now: float) -> None:
        """Each (tenant, source) at the next slot of its phase (a new or returning leader)."""
        self._heap = []
        for tenant_id, source, interval in self.units:
            offset = phase(tenant_id, source, interval)
            slot = (now - offset) // interval * interval + offset
            self._heap.append(
                (slot + interval if slot <= now else slot, tenant_id, source, interval, 0.0)
            )
        heapq.heapify(self._heap)

    async def tick(self) -> int:
        """Queue the jobs that are due; returns how many were queued."""
        now = self.now()
        if now - self._last_tick > max(5.0, 10 * self.tick_s):  # first tick, or a long gap
            self._schedule(now)
        self._last_tick = now
        due: list[tuple[float, str, str, float, float]] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap))
        results: list[int] = []
        try:
            for first in range(0, len(due), BATCH):
                keys: list[str] = [self.keys.poll_jobs]
                args: list[Any] = [ENTRY_VERSION]
                for at, tenant_id, source, _, waiting in due[first : first + BATCH]:
                    keys += [
                        self.keys.poll_job(tenant_id, source),
                        self.keys.watermark(tenant_id, source),
                    ]
                    args += [tenant_id, source, int((waiting or at) * 1000)]
                results += [int(r) for r in await self._enqueue(keys=keys, args=args)]
        except BaseException:  # Redis unavailable: what was not queued stays due
            for unit in due:  # (those queued find their job there: skipped, not doubled)
                heapq.heappush(self._heap, unit)
            raise
        queued = 0
        for (at, tenant_id, source, interval, waiting), result in zip(due, results, strict=True):
            if result:
                queued += 1
                self.queued.labels(source).inc()
                following = at + interval
                while following <= now:  # slots missed while it waited are not made up
                    following += interval
                heapq.heappush(self._heap, (following, tenant_id, source, interval, 0.0))
            else:  # its last job is not done: ask again shortly, not at the next slot
                self.skipped.labels(source).inc()
                heapq.heappush(
                    self._heap,
                    (now + max(1.0, self.tick_s), tenant_id, source, interval, waiting or at),
                )
        waits = [now - w for _, _, _, _, w in self._heap if w]
        self.overdue.set(max(waits, default=0.0))
        return queued


class PollJobs:
    """The workers' part: the handler of the ``poll`` stream's consumer."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        poller: Poller,
        *,
        consumer: str,
        keepalive_s: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.poller = poller
        self.consumer = consumer
        self.keepalive_s = keepalive_s
        self._touch = redis.register_script(_TOUCH)
        self._queue_script = redis.register_script(_QUEUE)
        self._finish = redis.register_script(_FINISH)
        self.outcomes = Counter(
            "receiver_poll_jobs",
            "Poll jobs a worker ended, by outcome: done, failed "
            "(Graph; the watermark stays), lost (taken over by another worker after a stall), "
            "unknown_tenant (not in this worker's settings)",
            ["outcome"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "receiver_poll_jobs_in_flight",
            "Poll jobs this worker is reading now",
            registry=registry,
        )

    def _args(self, entry: Entry) -> list[Any]:
        return [POLL_GROUP, entry.id, self.consumer]

    async def handle(self, entry: Entry) -> None:
        try:
            job = PollJob.from_fields(entry.fields)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Poison(str(exc)) from None
        tenant = self.settings.tenant(job.tenant_id)
        if tenant is None or not getattr(tenant.poll, job.source):
            # Settings differ between processes (a rolling change): end the job, the leader
            # decides again from its own settings.
            log.warning(
                "poll job for a tenant or source this worker does not poll: ended",
                extra={"tenant_id": job.tenant_id},
            )
            await self._end(entry, job, None, outcome="unknown_tenant")
            return

        async def queue(tenant_id: str, path: str, items: list[dict[str, Any]]) -> None:
            values = [fields[FIELD] for fields in entry_fields(tenant_id, path, items)]
            if not await self._queue_script(
                keys=[self.keys.poll_jobs, self.keys.notifications],
                args=[*self._args(entry), *values],
            ):
                raise JobLost("the poll job was taken over")

        read = asyncio.ensure_future(
            self.poller.read_source(tenant, job.source, job.watermark or None, queue)
        )
        keep = asyncio.create_task(self._keep(entry, read))
        self.in_flight.inc()
        try:
            count, moved = await read
        except JobLost:
            self._lost(entry, job)
            return
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # shutdown: the entry stays pending and is taken over
            self._lost(entry, job)  # the keep-alive found the job taken over
            return
        except Exception as exc:
            self.poller.failures.labels(job.source).inc()
            log.warning(
                "polling %s failed: %s", job.source, exc, extra={"tenant_id": job.tenant_id}
            )
            await self._end(entry, job, None, outcome="failed")
            return
        finally:
            keep.cancel()
            self.in_flight.dec()
            # A keep-alive that met a Redis error has ended; the writes are checked anyway.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keep
        await self._end(entry, job, moved, count=count)

    def _lost(self, entry: Entry, job: PollJob) -> None:
        entry.acked = True  # not ours to acknowledge any more
        self.outcomes.labels("lost").inc()
        log.warning(
            "poll job of %s taken over by another worker: stopped",
            job.source,
            extra={"tenant_id": job.tenant_id, "stream_id": entry.id},
        )

    async def _keep(self, entry: Entry, read: asyncio.Future[Any]) -> None:
        """Keep the job's entry fresh while it is read; stop the read when it is not ours."""
        while True:
            await asyncio.sleep(self.keepalive_s)
            if not await self._touch(keys=[self.keys.poll_jobs], args=self._args(entry)):
                read.cancel()
                return

    async def _end(
        self,
        entry: Entry,
        job: PollJob,
        moved: str | None,
        *,
        outcome: str = "done",
        count: int = 0,
    ) -> None:
        """Store the watermark (when it moved), acknowledge the job and clear its marker,
        in one script, and only while the job is still ours."""
        ok = await self._finish(
            keys=[
                self.keys.poll_jobs,
                self.keys.poll_job(job.tenant_id, job.source),
                self.keys.watermark(job.tenant_id, job.source),
            ],
            args=[*self._args(entry), moved or ""],
        )
        if not ok:
            self._lost(entry, job)
            return
        entry.acked = True
        self.outcomes.labels(outcome).inc()
        if count:
            log.debug("polled %s: %d items", job.source, count, extra={"tenant_id": job.tenant_id})

"""Scheduled jobs on exactly one process: a Redis lease, a fencing token, APScheduler.

The lease: ``SET leader <owner token> NX PX lease_s``, renewed every ``heartbeat_s`` by a
compare-and-extend script (only the holder's token extends it). Each acquisition increments
the fencing counter; the holder carries that number, and every write of the supervisor is
claimed through :meth:`Lease.claim`, one script that checks that the lease is still ours,
that the fencing counter still equals our number, and that no newer holder (a higher fence)
wrote the same subscription, and then records the write with our fence. A holder that stalls
(GC pause, lost network) and wakes up after its lease expired finds its claims refused.
Graph itself cannot check a fencing token; the claim is made right before the Graph call, so
the window that remains is one request long, and Graph's own rules (409 on duplicates, PATCH
being idempotent) make a straggling write harmless.

The holder also stops acting on its own clock: past ``90 %`` of the lease since its last
successful renewal it considers the lease lost, before Redis lets anyone else take it.

Standby processes try to acquire every heartbeat, so one takes over within
``lease_s + heartbeat_s`` of the holder's death (at once when the holder released the lease
on a clean shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.graph.subscriptions import TOUCH_TTL_S, LeaseLost, Supervisor
from receiver.keys import Keys
from receiver.settings import SchedulerSettings

log = logging.getLogger(__name__)

# KEYS: leader, fencing. ARGV: owner token, lease ms. -> the fence, or 0 when held by another.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""
# KEYS: leader. ARGV: owner token, lease ms. -> 1 extended, 0 not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: leader, fencing. ARGV: owner token, fence. -> 1 while ours.
_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
return 1
"""
# KEYS: leader, fencing, touch. ARGV: owner token, fence, kind, at, ttl.
# -> 1 claimed, 0 lease not ours, -1 a newer holder wrote this subscription. The write's
# outcome (kind, at) is recorded by the supervisor once Graph accepted it.
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local fence = tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= fence then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'fence') or '0') > fence then return -1 end
redis.call('HSET', KEYS[3], 'fence', ARGV[2], 'claim', ARGV[3], 'claim_at', ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""
SAFETY = 0.9  # act on at most this fraction of the lease after the last successful renewal


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class Lease:
    """The scheduler lease of one process; also the supervisor's write guard."""

    def __init__(self, redis: Redis, keys: Keys, lease_s: float, owner: str | None = None
                 ) -> None:
        self._redis = redis
        self._keys = keys
        self.lease_s = lease_s
        self.owner = owner or owner_token()
        self._fence = 0
        self._valid_until = 0.0  # monotonic
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._check = redis.register_script(_CHECK)
        self._claim = redis.register_script(_CLAIM)

    @property
    def fence(self) -> int:
        return self._fence

    @property
    def held(self) -> bool:
        return self._fence > 0 and time.monotonic() < self._valid_until

    def _ms(self) -> int:
        return max(1, int(self.lease_s * 1000))

    async def acquire(self) -> bool:
        started = time.monotonic()
        fence = int(await self._acquire(keys=[self._keys.leader, self._keys.fencing],
                                        args=[self.owner, self._ms()]))
        if fence <= 0:
            self._fence = 0
            return False
        self._fence = fence
        self._valid_until = started + self.lease_s * SAFETY
        return True

    async def renew(self) -> bool:
        started = time.monotonic()
        ok = int(await self._renew(keys=[self._keys.leader], args=[self.owner, self._ms()]))
        if ok:
            self._valid_until = started + self.lease_s * SAFETY
        else:
            self._fence = 0
        return bool(ok)

    async def release(self) -> None:
        if self._fence:
            self._fence = 0
            await self._release(keys=[self._keys.leader], args=[self.owner])

    async def holder(self) -> str | None:
        raw = cast("bytes | None", await self._redis.get(self._keys.leader))
        return raw.decode() if raw else None

    async def check(self) -> None:
        if not self.held:
            raise LeaseLost("the scheduler lease is not held (or ran out locally)")
        ok = await self._check(keys=[self._keys.leader, self._keys.fencing],
                               args=[self.owner, self._fence])
        if not ok:
            self._fence = 0
            raise LeaseLost("the scheduler lease was taken over")

    async def claim(self, subscription_id: str, kind: str, at: dt.datetime) -> None:
        if not self.held:
            raise LeaseLost("the scheduler lease is not held (or ran out locally)")
        result = int(await self._claim(
            keys=[self._keys.leader, self._keys.fencing,
                  self._keys.subscription_touch(subscription_id)],
            args=[self.owner, self._fence, kind, at.isoformat(), TOUCH_TTL_S]))
        if result == 0:
            self._fence = 0
            raise LeaseLost("the scheduler lease was taken over")
        if result < 0:
            raise LeaseLost(f"a newer lease holder already wrote subscription {subscription_id}")


@dataclass(frozen=True)
class Job:
    """Another leader-only job (the poller, backfills): run every ``interval_s``."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]
    registry: CollectorRegistry | None = None


class SchedulerRunner:
    """Holds (or waits for) the lease and runs the supervisor's jobs while it holds it."""

    def __init__(self, settings: SchedulerSettings, lease: Lease, supervisor: Supervisor,
                 *, consumer: str | None = None, jobs: Sequence[Job] = ()) -> None:
        self.settings = settings
        self.lease = lease
        self.supervisor = supervisor
        self.consumer = consumer or lease.owner
        self.scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self.acting = False
        self.jobs = list(jobs)

    async def reconcile_job(self) -> None:
        try:
            report = await self.supervisor.reconcile()
        except LeaseLost as exc:
            log.warning("reconcile stopped: %s", exc)
            return
        except Exception:
            log.exception("reconcile failed")
            return
        level = logging.WARNING if report.errors else logging.INFO
        log.log(level, "reconcile: %s", report.summary(), extra={"count": report.tenants})

    async def lifecycle_job(self) -> None:
        block_ms = max(1, int(self.settings.lifecycle_interval_s * 500))
        try:
            while await self.supervisor.consume_lifecycle(self.consumer, block_ms=block_ms):
                pass
        except LeaseLost as exc:
            log.warning("lifecycle handling stopped: %s", exc)
        except (RedisError, OSError) as exc:
            log.warning("lifecycle stream unavailable: %s", type(exc).__name__)

    def _start_jobs(self) -> None:
        s = self.settings
        now = dt.datetime.now(dt.UTC)
        self.scheduler.add_job(self.reconcile_job, "interval", id="reconcile",
                               seconds=s.reconcile_interval_s, next_run_time=now,
                               max_instances=1, coalesce=True, replace_existing=True,
                               misfire_grace_time=None)
        self.scheduler.add_job(self.lifecycle_job, "interval", id="lifecycle",
                               seconds=s.lifecycle_interval_s, next_run_time=now,
                               max_instances=1, coalesce=True, replace_existing=True,
                               misfire_grace_time=None)
        for job in self.jobs:
            self.scheduler.add_job(self._guarded(job), "interval", id=job.name,
                                   seconds=job.interval_s, next_run_time=now, max_instances=1,
                                   coalesce=True, replace_existing=True, misfire_grace_time=None)
        self.acting = True
        self.supervisor.metrics.leader.set(1)
        self.supervisor.metrics.fence.set(self.lease.fence)

    @property
    def registries(self) -> list[CollectorRegistry]:
        """The scheduler's metrics (the supervisor's and those of its jobs)."""
        out = [self.supervisor.metrics.registry, self.supervisor.graph.registry]
        out += [r for job in self.jobs if (r := job.registry) is not None]
        return out

    def _guarded(self, job: Job) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await self.lease.check()
                await job.run()
            except LeaseLost as exc:
                log.warning("%s stopped: %s", job.name, exc)
            except Exception:
                log.exception("%s failed", job.name)

        return run

    def _stop_jobs(self) -> None:
        if self.acting:
            self.scheduler.remove_all_jobs()
            self.acting = False
            self.supervisor.metrics.leader.set(0)

    async def tick(self) -> None:
        """One heartbeat: renew the lease we hold, or try to take a free one."""
        try:
            if self.acting:
                if await self.lease.renew():
                    return
                log.warning("scheduler lease lost to another process: standing by",
                            extra={"role": "scheduler"})
                self._stop_jobs()
            elif await self.lease.acquire():
                log.info("scheduler lease acquired (fence %d): acting", self.lease.fence,
                         extra={"role": "scheduler"})
                self._start_jobs()
        except (RedisError, OSError) as exc:
            log.warning("scheduler lease: redis error %s", type(exc).__name__,
                        extra={"role": "scheduler"})
            if self.acting and not self.lease.held:
                log.warning("scheduler lease ran out without a renewal: standing by",
                            extra={"role": "scheduler"})
                self._stop_jobs()

    async def run(self, stop: asyncio.Event) -> None:
        self.scheduler.start()
        log.info("scheduler started (lease %ss, heartbeat %ss), owner %s", self.settings.lease_s,
                 self.settings.heartbeat_s, self.lease.owner, extra={"role": "scheduler"})
        try:
            while not stop.is_set():
                await self.tick()
                if self.acting and not self.lease.held:
                    self._stop_jobs()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.heartbeat_s)
        finally:
            self._stop_jobs()
            self.scheduler.shutdown(wait=False)
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
            log.info("scheduler stopped", extra={"role": "scheduler"})

"""The scheduler's runner: APScheduler jobs on the one process that holds the lease
(receiver.store.lease): reconcile, lifecycle events, and the jobs the roles add.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from receiver import backoff
from receiver.config.settings import SchedulerSettings
from receiver.graph.subscriptions import Supervisor
from receiver.scheduler.lifecycle import consume_lifecycle
from receiver.store.lease import Lease, LeaseLost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Another leader-only job (the poller, backfills): run every ``interval_s``."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]
    registry: CollectorRegistry | None = None


class SchedulerRunner:
    """Holds (or waits for) the lease and runs the supervisor's jobs while it holds it."""

    def __init__(
        self,
        settings: SchedulerSettings,
        lease: Lease,
        supervisor: Supervisor,
        *,
        consumer: str | None = None,
        jobs: Sequence[Job] = (),
    ) -> None:
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
            while await consume_lifecycle(self.supervisor, self.consumer, block_ms=block_ms):
                pass
        except LeaseLost as exc:
            log.warning("lifecycle handling stopped: %s", exc)
        except (RedisError, OSError) as exc:
            log.warning("lifecycle stream unavailable: %s", type(exc).__name__)

    def _start_jobs(self) -> None:
        s = self.settings
        now = dt.datetime.now(dt.UTC)
        jobs = [
            (self.reconcile_job, "reconcile", s.reconcile_interval_s),
            (self.lifecycle_job, "lifecycle", s.lifecycle_interval_s),
            *((self._guarded(job), job.name, job.interval_s) for job in self.jobs),
        ]
        for run, name, interval_s in jobs:
            # One run at a time, a missed run made up once, at once and whenever late.
            self.scheduler.add_job(
                run,
                "interval",
                id=name,
                seconds=interval_s,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                replace_existing=True,
                misfire_grace_time=None,
            )
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
                log.warning(
                    "scheduler lease lost to another process: standing by",
                    extra={"role": "scheduler"},
                )
                self._stop_jobs()
            elif await self.lease.acquire():
                log.info(
                    "scheduler lease acquired (fence %d): acting",
                    self.lease.fence,
                    extra={"role": "scheduler"},
                )
                self._start_jobs()
        except (RedisError, OSError) as exc:
            log.warning(
                "scheduler lease: redis error %s", type(exc).__name__, extra={"role": "scheduler"}
            )
            if self.acting and not self.lease.held:
                log.warning(
                    "scheduler lease ran out without a renewal: standing by",
                    extra={"role": "scheduler"},
                )
                self._stop_jobs()

    async def run(self, stop: asyncio.Event) -> None:
        self.scheduler.start()
        log.info(
            "scheduler started (lease %ss, heartbeat %ss), owner %s",
            self.settings.lease_s,
            self.settings.heartbeat_s,
            self.lease.owner,
            extra={"role": "scheduler"},
        )
        try:
            while not stop.is_set():
                await self.tick()
                if self.acting and not self.lease.held:
                    self._stop_jobs()
                await backoff.pause(stop, self.settings.heartbeat_s)
        finally:
            self._stop_jobs()
            self.scheduler.shutdown(wait=False)
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
            log.info("scheduler stopped", extra={"role": "scheduler"})

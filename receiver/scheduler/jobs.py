"""The lease holder's jobs, wired from the settings: reconcile and lifecycle events (the
runner's own), deciding which tenant source is due to be polled (the workers poll it:
receiver.pipeline.poll), and the Secure Score watch."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from receiver.config.settings import Settings
from receiver.graph.client import GraphClient
from receiver.graph.subscriptions import Supervisor
from receiver.pipeline.poll import Planner
from receiver.scheduler.runner import Job, SchedulerRunner
from receiver.securescore.job import SecureScoreJob
from receiver.store.keys import Keys
from receiver.store.lease import Lease


def build_runner(settings: Settings, redis: Redis, graph: GraphClient) -> SchedulerRunner:
    """The lease holder's jobs: reconcile, lifecycle events, deciding which tenant is due to
    be polled (the workers poll it, and run backfills: receiver.pipeline.poll), and the
    Secure Score watch."""
    keys = Keys(settings.redis.key_prefix)
    lease = Lease(redis, keys, settings.scheduler.lease_s)
    jobs: list[Job] = []
    planner = Planner(redis, keys, settings, registry=CollectorRegistry())
    if planner.units:

        async def plan_polls() -> None:
            await planner.tick()

        jobs.append(Job("poll", planner.tick_s, plan_polls, planner.registry))
    if any(t.secure_score.enabled for t in settings.tenants):
        scores = SecureScoreJob(redis, keys, settings, graph, registry=CollectorRegistry())

        async def check_scores() -> None:
            await scores.run_all()

        jobs.append(Job("secure_score", scores.interval_s, check_scores, scores.registry))
    return SchedulerRunner(
        settings.scheduler, lease, Supervisor(settings, graph, redis, guard=lease), jobs=jobs
    )

"""The worker role: every pipeline stage of one process, built from the settings.

- fetch: ``notifications`` -> ``alerts`` (group ``fetch``); an alert that the routes send on
  as it is (no grouping, no silence) goes straight to its ``sink:<name>`` streams instead,
  in the dedup's own step (:meth:`receiver.pipeline.route.RouteStage.handoff`)
- route: ``alerts`` -> ``sink:<name>`` (group ``route``)
- deliver: one consumer per sink stream (group ``deliver``), so a slow sink backs up only
  itself
- groups: routes with ``group_by`` collect alerts; a flusher sends each group when it is due
- poll: the poll jobs the scheduler's leader queues (group ``poll``), and backfill requests
  (group ``poller``): each reads one tenant's source from Graph into ``notifications``

Any number of worker processes share the work through the consumer groups.

The stages run as one ``asyncio.TaskGroup``. A stage that fails is logged and stops the
others the graceful way (the ``stop`` event: they finish what they hold, as on a signal);
when every task has ended, ``run`` raises what failed: the error itself when one stage
failed, an ``ExceptionGroup`` of all of them when several did, none lost or replaced. Tasks
still running ``STOP_TIMEOUT_S`` after the stop are cancelled (their entries stay pending and
another worker claims them). A cancelled ``run`` cancels every task, waits for them and
raises ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver import backoff
from receiver.actions.rules import buttons as triage_buttons
from receiver.config.settings import Settings
from receiver.graph.batch import BatchedReads
from receiver.graph.client import GraphClient, client_for
from receiver.pipeline.consumer import Consumer, ConsumerConfig
from receiver.pipeline.deliver import DeliverStage, delivery_counter
from receiver.pipeline.fetch import FetchStage
from receiver.pipeline.grouping import Groups
from receiver.pipeline.route import RouteStage
from receiver.pipeline.tickets import RedisSlackMessageStore, RedisTicketStore
from receiver.pipeline.writeback import GraphMail, GraphWriteBack
from receiver.routing.config import RoutesConfig, load_routes
from receiver.sinks.registry import Sinks, build_sinks
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0  # after the stop, how long the stages may take to finish what they hold


@dataclass
class Worker:
    settings: Settings
    redis: Redis
    graph: GraphClient
    sinks: Sinks
    consumers: list[Consumer] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    groups: Groups | None = None

    @property
    def registries(self) -> list[CollectorRegistry]:
        return [self.registry, self.sinks.metrics.registry, self.graph.registry]

    async def watch_lag(self, stop: asyncio.Event, interval_s: float = 5.0) -> None:
        """Keep the backlog gauges current: unread, pending and delayed per stage stream."""
        gauge = Gauge(
            "receiver_stream_lag",
            "Entries waiting per stream: unread (not yet "
            "read), pending (read, not acknowledged), delayed (waiting to retry)",
            ["stream", "kind"],
            registry=self.registry,
        )
        while not stop.is_set():
            for consumer in self.consumers:
                try:
                    lag = await consumer.lag()
                except (RedisError, OSError) as exc:  # Redis away: the stages say so already
                    log.debug(
                        "stream lag of %s not read: %s", consumer.config.stream, type(exc).__name__
                    )
                    continue
                for kind, value in lag.items():
                    gauge.labels(consumer.config.stream, kind).set(value)
            await backoff.pause(stop, interval_s)

    async def run(self, stop: asyncio.Event | None = None, *, burst: bool = False) -> None:
        """Run every stage until ``stop`` (or, in burst mode, until nothing is left)."""
        stop = stop or asyncio.Event()
        if burst:
            # Stages feed each other: repeat until a whole pass finds nothing to do.
            # Groups that are due are sent too (those still waiting are not).
            while True:
                before = sum(c.processed + c.poisoned for c in self.consumers)
                for consumer in self.consumers:
                    await consumer.run(stop, burst=True)
                flushed = await self.groups.flush_due() if self.groups else 0
                if not flushed and sum(c.processed + c.poisoned for c in self.consumers) == before:
                    return
        work: list[tuple[str, Coroutine[Any, Any, None]]] = [
            (c.config.stream, c.run(stop)) for c in self.consumers
        ]
        if self.groups is not None:
            work.append(("groups", self.groups.run(stop)))
        work.append(("lag", self.watch_lag(stop)))
        await run_together(work, stop)

    async def aclose(self) -> None:
        await self.sinks.aclose()
        await self.graph.aclose()


def build_worker(
    settings: Settings,
    redis: Redis,
    *,
    routes: RoutesConfig | None = None,
    graph: GraphClient | None = None,
    consumer_name: str | None = None,
    visibility_timeout_s: float | None = None,
) -> Worker:
    keys = Keys(settings.redis.key_prefix)
    if routes is None:
        if settings.routes_file is None:
            raise ValueError("the worker needs a routes file (routes_file in the settings)")
        routes = load_routes(settings.routes_file, [s.name for s in settings.sinks])
    registry = CollectorRegistry()
    graph = graph or client_for(settings, redis)
    sinks = build_sinks(
        settings.sinks,
        tickets=RedisTicketStore(redis, keys),
        writeback=GraphWriteBack(graph),
        mailer=GraphMail(graph, settings.find_tenant),
        messages=RedisSlackMessageStore(redis, keys),
        buttons=triage_buttons if settings.actions.slack.enabled else None,
    )
    worker = Worker(settings, redis, graph, sinks, registry=registry)

    ws = settings.worker

    def config(stream: str, group: str, concurrency: int) -> ConsumerConfig:
        base = ConsumerConfig(
            stream=stream,
            group=group,
            concurrency=concurrency,
            visibility_timeout_s=visibility_timeout_s or ws.visibility_timeout_s,
            max_attempts=ws.max_attempts,
        )
        if consumer_name:
            base.consumer = consumer_name
        return base

    worker.groups = Groups(redis, keys, sinks=set(sinks.names()), registry=registry)
    route = RouteStage(
        redis, keys, routes, set(sinks.names()), groups=worker.groups, registry=registry
    )
    reads = BatchedReads(graph, max_items=settings.graph.read_batch_size, registry=registry)
    fetch = FetchStage(redis, keys, settings, reads, registry=registry, route=route)
    stages = [
        (keys.notifications, "fetch", ws.fetch_concurrency, fetch.handle),
        (keys.alerts, "route", ws.route_concurrency, route.handle),
    ]
    deliveries = delivery_counter(registry)
    links = None
    if settings.actions.enabled:  # triage buttons in Teams cards, Slack messages, emails
        from receiver.actions.links import LINK_SINK_TYPES, ActionLinks

        links = ActionLinks.from_settings(settings).for_alert
    for name in sinks.names():
        stage = DeliverStage(
            redis,
            keys,
            sinks[name],
            outcomes=deliveries,
            links=links if links and sinks[name].type in LINK_SINK_TYPES else None,
        )
        stages.append((keys.sink(name), "deliver", ws.deliver_concurrency, stage.handle))
    if settings.actions.slack.enabled:  # Slack button clicks the web role queued
        from receiver.actions.slack_worker import GROUP, SlackActions

        clicks = SlackActions(
            settings, redis, keys, graph, registry=registry, client=sinks.pool.client()
        )
        stages.append((keys.slack_interactions, GROUP, 8, clicks.handle))
    for stream, group, concurrency, handler in stages:
        worker.consumers.append(Consumer(redis, keys, config(stream, group, concurrency), handler))
    worker.consumers += poll_consumers(
        settings,
        redis,
        keys,
        graph,
        registry=registry,
        consumer_name=consumer_name,
        visibility_timeout_s=visibility_timeout_s,
    )
    return worker


def poll_consumers(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    graph: GraphClient,
    *,
    registry: CollectorRegistry,
    consumer_name: str | None = None,
    visibility_timeout_s: float | None = None,
) -> list[Consumer]:
    """The poll jobs the scheduler's leader queues, and the backfill requests of the
    subscription supervisor: read by every worker process (receiver.pipeline.poll)."""
    from receiver.graph.poller import Poller
    from receiver.pipeline.consumer import Entry, Poison, Retry
    from receiver.pipeline.poll import POLL_GROUP, PollJobs
    from receiver.store.entries import BackfillRequest

    ws = settings.worker
    poller = Poller(redis, keys, settings, graph, registry=registry)
    visibility = visibility_timeout_s or ws.poll_visibility_timeout_s
    polls = ConsumerConfig(
        keys.poll_jobs,
        POLL_GROUP,
        concurrency=ws.poll_concurrency,
        visibility_timeout_s=visibility,
        max_attempts=ws.max_attempts,
    )
    backfills = ConsumerConfig(
        keys.backfill_requests,
        "poller",
        concurrency=4,
        visibility_timeout_s=300,
        max_attempts=ws.max_attempts,
    )
    if consumer_name:
        polls.consumer = backfills.consumer = consumer_name
    jobs = PollJobs(
        redis,
        keys,
        settings,
        poller,
        consumer=polls.consumer,
        keepalive_s=visibility / 3,
        registry=registry,
    )

    async def backfill(entry: Entry) -> None:
        try:
            request = BackfillRequest.from_fields(entry.fields)
        except ValueError as exc:
            raise Poison(str(exc)) from None
        try:
            await poller.backfill(request)
        except Exception as exc:
            # Soon again (not after the 5-minute visibility timeout): a backfill that met
            # Graph failing or a Redis connection dropped by a restart is what came to make
            # up for a gap.
            if entry.attempt >= ws.max_attempts:
                raise Poison(f"backfill failed {entry.attempt} times: {exc}") from exc
            raise Retry(
                min(60.0, 5.0 * entry.attempt), f"backfill failed: {type(exc).__name__}"
            ) from exc

    return [Consumer(redis, keys, polls, jobs.handle), Consumer(redis, keys, backfills, backfill)]


async def run_together(
    work: list[tuple[str, Coroutine[Any, Any, None]]],
    stop: asyncio.Event,
    *,
    stop_timeout_s: float = STOP_TIMEOUT_S,
) -> None:
    """Run named coroutines that end when ``stop`` is set, as one TaskGroup; see the module
    docstring for what happens on a failure, a stop and a cancellation."""
    if not work:
        return
    failures: list[Exception] = []
    left = len(work)

    async def guarded(name: str, coro: Coroutine[Any, Any, None]) -> None:
        nonlocal left
        try:
            await coro
        except Exception as exc:  # reported below; the others stop the graceful way
            exc.add_note(f"in the worker's {name} task")
            log.error(
                "worker: %s failed, stopping the others: %s: %s",
                name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            failures.append(exc)
            stop.set()
        finally:
            left -= 1
            if left == 0:  # every task ended (none should before the stop): nothing to wait
                stop.set()

    timer: asyncio.TimerHandle | None = None
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(guarded(name, coro), name=name) for name, coro in work]
            await stop.wait()

            def overdue() -> None:
                late = [t.get_name() for t in tasks if not t.done()]
                log.warning(
                    "worker: %s still running %.0fs after the stop: cancelled",
                    ", ".join(late),
                    stop_timeout_s,
                )
                for task in tasks:
                    task.cancel()

            timer = asyncio.get_running_loop().call_later(stop_timeout_s, overdue)
    finally:
        if timer is not None:
            timer.cancel()
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup(f"{len(failures)} worker tasks failed", failures)

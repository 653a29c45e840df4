"""Posts change and lifecycle notifications to receivers the way Graph does.

Items for the same URL that arrive within a short window (or up to a batch size) go out in
one POST `{"value": [...]}`. A non-2xx answer, a timeout (Graph: 3 s) or a connection error is
retried with exponential backoff until the notification is older than the maximum age
(Graph: 4 h). Every attempt, and every validation handshake, is recorded as a delivery.

Change notifications follow Graph's throttling of slow endpoints (`endpoints.py`): an endpoint
flagged for slow answers gets each notification, and each retry, only after a delay (Graph:
10 minutes), and one with more slow answers gets none.

It runs as asyncio tasks on the server's loop, started and stopped with the app lifespan,
with one shared `httpx.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import httpx

from receiver.simulator.clock import iso
from receiver.simulator.endpoints import DELAYED, DROPPED, EndpointHealth
from receiver.simulator.handshake import HandshakeResult, validate_endpoint

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Subscription

log = logging.getLogger(__name__)

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
MAX_RECORDED_DELIVERIES = 20_000
REORDER_HOLD_S = 2.0  # the longest the reorder fault holds items back


def _verify(setting: bool | str) -> bool | ssl.SSLContext:
    return ssl.create_default_context(cafile=setting) if isinstance(setting, str) else setting


class Notifier:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.deliveries: list[dict[str, Any]] = []
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._pending_since: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._sequence = 0
        self._held: list[tuple[str, dict[str, Any]]] = []
        self._held_timer: asyncio.TimerHandle | None = None
        self.endpoints = EndpointHealth(sim.config)

    # lifecycle of the notifier itself

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            verify=_verify(self.sim.config.notifier_verify), trust_env=False, follow_redirects=False
        )

    async def stop(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the notifier is not started")
        return self._client

    def idle(self) -> bool:
        return not self._pending and not self._tasks and not self._held

    # validation handshake

    async def validate(self, url: str) -> HandshakeResult:
        result = await validate_endpoint(self.client, url, self.sim.config.handshake_timeout_s)
        self.sim.counters["handshake.attempts"] += 1
        if result.error:
            self.sim.counters["handshake.failed"] += 1
        self._record(
            kind="validation",
            url=result.url,
            body=None,
            status=result.status_code,
            attempt=1,
            error=result.error,
            duration_ms=result.duration_ms,
            extra={"validationToken": result.token, "responseBody": result.body},
        )
        return result

    # change notifications

    def alert_changed(self, tenant_id: str, alert: dict[str, Any], change_type: str) -> int:
        """Queue a notification to every matching subscription; returns how many."""
        sim = self.sim
        sim.expire_subscriptions()
        tenant = sim.directory.find(tenant_id)
        if tenant is None:
            return 0
        live = sim.legacy_alerts_live()
        queued = 0
        for subscription in list(tenant.data.subscriptions.values()):
            if change_type not in subscription.change_types:
                continue
            if not sim.subscription_matches(subscription, alert):
                continue
            if not live:
                # Retired: the subscription exists and renews, but nothing is ever posted to it.
                sim.counters["notifications.retired"] += 1
                continue
            item = self._change_item(subscription, alert["id"], change_type)
            if sim.faults.take("drop_notifications"):
                sim.counters["notifications.dropped"] += 1
                continue
            if sim.faults.take("reorder_notifications"):
                self._hold(subscription.notification_url, item)
                queued += 1
                continue
            copies = 2 if sim.faults.take("duplicate_notifications") else 1
            if copies == 2:
                sim.counters["notifications.duplicated"] += 1
            for _ in range(copies):
                self._enqueue(subscription.notification_url, item)
                queued += 1
        return queued

    def _change_item(
        self, subscription: Subscription, alert_id: str, change_type: str
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": iso(subscription.expiration),
            "changeType": change_type,
            "resource": f"security/alerts/{alert_id}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.alert",
                "@odata.id": f"Security/Alerts/{alert_id}",
                "id": alert_id,
            },
            "tenantId": subscription.tenant_id,
        }
        if subscription.client_state is not None:
            item["clientState"] = subscription.client_state
        return item

    def lifecycle(self, subscription: Subscription, event: str) -> None:
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}; one of {LIFECYCLE_EVENTS}")
        if not subscription.lifecycle_notification_url:
            raise ValueError(f"subscription {subscription.id} has no lifecycleNotificationUrl")
        item: dict[str, Any] = {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": iso(subscription.expiration),
            "tenantId": subscription.tenant_id,
            "clientState": subscription.client_state,
            "lifecycleEvent": event,
        }
        self.sim.counters[f"lifecycle.{event}"] += 1
        self._spawn(
            self._deliver(
                subscription.lifecycle_notification_url,
                [item],
                kind="lifecycle",
                since=time.monotonic(),
            )
        )

    # reordering (the reorder_notifications fault)

    def _hold(self, url: str, item: dict[str, Any]) -> None:
        """Hold the item back; when the fault's count is used up (or 2 s passed), post the
        held items newest first, one POST each, one after the other."""
        self._held.append((url, item))
        self.sim.counters["notifications.reordered"] += 1
        if self.sim.faults.reorder_notifications <= 0:
            self._release_held()
        elif self._held_timer is None:
            loop = asyncio.get_running_loop()
            self._held_timer = loop.call_later(REORDER_HOLD_S, self._release_held)

    def _release_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held[::-1], []
        if held:
            self._spawn(self._deliver_each(held))

    async def _deliver_each(self, held: list[tuple[str, dict[str, Any]]]) -> None:
        for url, item in held:
            await self._deliver(url, [item], kind="notification", since=time.monotonic())

    # batching and delivery

    def _enqueue(self, url: str, item: dict[str, Any]) -> None:
        batch = self._pending.setdefault(url, [])
        batch.append(item)
        self._pending_since.setdefault(url, time.monotonic())
        config = self.sim.config
        if len(batch) >= config.notifier_max_batch:
            self._flush(url)
        elif url not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[url] = loop.call_later(config.notifier_batch_window_s, self._flush, url)

    def _flush(self, url: str) -> None:
        timer = self._timers.pop(url, None)
        if timer is not None:
            timer.cancel()
        items = self._pending.pop(url, [])
        since = self._pending_since.pop(url, time.monotonic())
        if items:
            self._spawn(self._deliver(url, items, kind="notification", since=since))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, url: str, items: list[dict[str, Any]], *, kind: str, since: float
    ) -> None:
        config = self.sim.config
        counters = self.sim.counters
        throttled = kind == "notification"  # Graph's throttling is of change notifications
        body = {"value": items}
        attempt = 0
        while True:
            attempt += 1
            if throttled and attempt == 1 and self.endpoints.state(url) == DELAYED:
                counters["notifications.delayed"] += 1
                await asyncio.sleep(config.notifier_slow_delay_s)
            if throttled and self.endpoints.state(url) == DROPPED:
                counters["notifications.throttle_dropped"] += 1
                counters["notifications.throttle_dropped_items"] += len(items)
                log.warning("notification dropped: endpoint too slow", extra={"url": url})
                return
            status, error, duration = await self._post(url, body)
            if throttled:
                self.endpoints.record(url, seconds=duration / 1000, timed_out=error == "timeout")
            self._record(
                kind=kind,
                url=url,
                body=body,
                status=status,
                attempt=attempt,
                error=error,
                duration_ms=duration,
            )
            if status is not None and 200 <= status < 300:
                self.sim.counters[f"{kind}s.delivered"] += 1
                self.sim.counters[f"{kind}s.items"] += len(items)
                return
            self.sim.counters[f"{kind}s.failed_attempts"] += 1
            delay = min(
                config.notifier_backoff_base_s * 2 ** (attempt - 1), config.notifier_backoff_max_s
            )
            if throttled and self.endpoints.state(url) == DELAYED:
                delay = config.notifier_slow_delay_s  # a flagged endpoint's failures wait too
            if time.monotonic() - since + delay > config.notifier_max_age_s:
                self.sim.counters[f"{kind}s.abandoned"] += 1
                log.warning("notification abandoned", extra={"url": url, "attempts": attempt})
                return
            await asyncio.sleep(delay)

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int | None, str | None, float]:
        started = time.perf_counter()
        timeout = self.sim.config.notification_timeout_s
        try:
            response = await asyncio.wait_for(
                self.client.post(url, json=body, timeout=timeout), timeout=timeout
            )
            status: int | None = response.status_code
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except (TimeoutError, httpx.TimeoutException):
            status, error = None, "timeout"
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        return status, error, round((time.perf_counter() - started) * 1000, 1)

    def _record(
        self,
        *,
        kind: str,
        url: str,
        body: dict[str, Any] | None,
        status: int | None,
        attempt: int,
        error: str | None,
        duration_ms: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._sequence += 1
        record: dict[str, Any] = {
            "sequence": self._sequence,
            "kind": kind,
            "url": url,
            "body": body,
            "statusCode": status,
            "attempt": attempt,
            "error": error,
            "durationMs": duration_ms,
            "time": iso(self.sim.clock.now()),
        }
        record.update(extra or {})
        if len(self.deliveries) >= MAX_RECORDED_DELIVERIES:
            del self.deliveries[: MAX_RECORDED_DELIVERIES // 10]
        self.deliveries.append(record)

    def clear(self) -> None:
        self.deliveries.clear()

    def cancel_all(self) -> None:
        """Forget queued batches and stop retries in flight (control API reset)."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._held.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._pending.clear()
        self._pending_since.clear()
        self.endpoints.clear()
        for task in list(self._tasks):
            task.cancel()

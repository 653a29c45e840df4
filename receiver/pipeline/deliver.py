"""The deliver stage: one consumer group per sink stream, so a slow or broken sink backs up
only itself.

The retry decision is made here, from what the sink raised:
- success: recorded on the alert's timeline, acknowledged;
- RetryableError: tried again on a schedule like Svix's (5 s, 30 s, 2 min, 10 min, 30 min,
  1 h, then hourly) with jitter, or after the sink's Retry-After if it gave one, until the
  attempts or the age run out; then the dead-letter stream;
- PermanentError (and anything unexpected from a sink): the dead-letter stream at once.
A circuit breaker stops calling a sink that keeps failing for a cool-down, and a per-sink
rate limit spaces calls out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from receiver import backoff
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.coalesce import Transactions
from receiver.pipeline.consumer import Entry, Poison, Retry
from receiver.pipeline.fetch import envelope_of
from receiver.redaction import cut
from receiver.sinks.base import Delivery, PermanentError, RetryableError, Sink
from receiver.store.entries import AlertEntry
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE_S = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
HOURLY_S = 3600.0


@dataclass(frozen=True)
class DeliverPolicy:
    schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    max_attempts: int = 30
    max_age_s: float = 24 * 3600.0
    jitter: float = 0.2  # +/- this fraction of the delay
    breaker_threshold: int = 5  # consecutive failures that open the circuit
    breaker_cooldown_s: float = 30.0
    rate_per_s: float = 0.0  # 0: no limit

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``: the server's Retry-After when it gave one
        (never earlier, a little later so retries do not arrive in step), else the schedule
        with jitter."""
        if retry_after is not None:
            return backoff.after(retry_after, self.jitter)
        base = (
            self.schedule_s[attempt - 1]
            if attempt <= len(self.schedule_s)
            else max(HOURLY_S, self.schedule_s[-1] if self.schedule_s else HOURLY_S)
        )
        return backoff.spread(base, self.jitter)


class CircuitBreaker:
    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None

    def open_for(self) -> float:
        """Seconds until the sink may be called again (0: closed or half-open)."""
        if self.opened_at is None:
            return 0.0
        left = self.opened_at + self.cooldown_s - time.monotonic()
        return max(0.0, left)

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


class _Pacer:
    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next_at > now:
                await asyncio.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + self.interval


def delivery_counter(registry: CollectorRegistry | None) -> Counter:
    """The deliveries counter; one per registry, shared by every sink's stage."""
    return Counter(
        "receiver_deliveries",
        "Deliveries by sink and outcome",
        ["sink", "outcome"],
        registry=registry,
    )


# Envelope -> (label, url) triage links (receiver.actions.links.ActionLinks.for_alert).
ActionLinksFor = Callable[[Envelope], tuple[tuple[str, str], ...]]


class DeliverStage:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        sink: Sink,
        policy: DeliverPolicy | None = None,
        *,
        outcomes: Counter | None = None,
        links: ActionLinksFor | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        self.redis = redis
        # Delivery records of sends that finish in the same turn: one transaction.
        self.transactions = transactions or Transactions(redis)
        self.keys = keys
        self.sink = sink
        # Signed triage links for the message (receiver.actions), when the sink shows them.
        self.links = links
        self.policy = policy or DeliverPolicy()
        self.breaker = CircuitBreaker(self.policy.breaker_threshold, self.policy.breaker_cooldown_s)
        self._pacer = _Pacer(self.policy.rate_per_s)
        self.outcomes = outcomes if outcomes is not None else delivery_counter(None)

    @property
    def stream(self) -> str:
        return self.keys.sink(self.sink.name)

    async def handle(self, entry: Entry) -> None:
        try:
            envelope = envelope_of(entry)
        except (ValueError, TypeError, KeyError) as exc:
            raise Poison(f"not an alert envelope: {exc}") from None
        route = AlertEntry.of(entry.fields).route.decode()
        wait = self.breaker.open_for()
        if wait > 0:
            raise Retry(wait, "circuit open")
        await self._pacer.wait()
        name = self.sink.name
        try:
            actions = self.links(envelope) if self.links is not None else ()
            result = await self.sink.send(
                envelope, Delivery(route=route, attempt=entry.attempt, actions=actions)
            )
        except RetryableError as exc:
            self.breaker.failure()
            age_s = self._age_s(entry)
            if entry.attempt >= self.policy.max_attempts or age_s >= self.policy.max_age_s:
                await self._dead_letter(
                    entry, envelope.tenant_id, envelope.id, str(exc), reason="retries exhausted"
                )
                return
            delay = self.policy.delay(entry.attempt, exc.retry_after)
            self.outcomes.labels(name, "retry").inc()
            await records.record(
                self.redis,
                self.keys,
                envelope.tenant_id,
                envelope.id,
                records.event(
                    "retrying",
                    sink=name,
                    attempt=entry.attempt,
                    detail=cut(str(exc), 300),
                    next_in_s=round(delay, 1),
                ),
            )
            raise Retry(delay, cut(str(exc), 300)) from None
        except PermanentError as exc:
            self.breaker.failure()
            await self._dead_letter(
                entry, envelope.tenant_id, envelope.id, str(exc), reason="permanent error"
            )
            return
        except Exception as exc:  # a bug in a sink must not loop: dead-letter it
            log.exception("sink %s raised unexpectedly", name, extra={"sink": name})
            await self._dead_letter(
                entry,
                envelope.tenant_id,
                envelope.id,
                f"{type(exc).__name__} in sink",
                reason="sink error",
            )
            return
        self.breaker.success()
        self.outcomes.labels(name, "delivered").inc()
        async with self.redis.pipeline(transaction=True) as pipe:
            records.add(
                pipe,
                self.keys,
                envelope.tenant_id,
                envelope.id,
                records.event(
                    "delivered",
                    sink=name,
                    attempt=entry.attempt,
                    detail=result.detail,
                    ticket=result.ticket_id,
                    version=envelope.version,
                ),
            )
            entry.ack_with(pipe)
            await self.transactions.execute(pipe)

    @staticmethod
    def _age_s(entry: Entry) -> float:
        """Seconds since the route stage queued the delivery (kept across retries)."""
        queued = entry.fields.get(b"queued_at")
        queued_ms = int(queued) if queued else int(entry.id.split("-")[0])
        return max(0.0, time.time() - queued_ms / 1000)

    async def _dead_letter(
        self, entry: Entry, tenant_id: str, alert_id: str, error: str, *, reason: str
    ) -> None:
        name = self.sink.name
        self.outcomes.labels(name, "dead_lettered").inc()
        log.warning(
            "delivery dead-lettered (%s): %s",
            reason,
            cut(error, 300),
            extra={
                "sink": name,
                "alert_id": alert_id,
                "tenant_id": tenant_id,
                "attempt": entry.attempt,
            },
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.dlq(name),
                AlertEntry.of(entry.fields).to_fields(
                    error=cut(error, 2000),
                    reason=reason,
                    attempts=str(entry.attempt),
                    at=str(int(time.time() * 1000)),
                ),
            )
            records.add(
                pipe,
                self.keys,
                tenant_id,
                alert_id,
                records.event(
                    "dead_lettered",
                    sink=name,
                    attempt=entry.attempt,
                    detail=f"{reason}: {cut(error, 300)}",
                ),
            )
            await pipe.execute()


async def replay(
    redis: Redis,
    keys: Keys,
    sink: str,
    *,
    entry_ids: list[str] | None = None,
    since_ms: int | None = None,
    on_moved: Callable[[], object] | None = None,
) -> int:
    """Move dead-lettered deliveries back into the sink's stream (all, some, or since a
    time); returns how many. Each moves atomically; ``on_moved`` is called after each
    (the CLI's progress display)."""
    moved = 0
    entries: Any = await redis.xrange(keys.dlq(sink))
    for entry_id, fields in entries:
        eid = entry_id.decode()
        if entry_ids is not None and eid not in entry_ids:
            continue
        if since_ms is not None and int(eid.split("-")[0]) < since_ms:
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.sink(sink), AlertEntry.of(fields).to_fields())
            pipe.xdel(keys.dlq(sink), eid)
            await pipe.execute()
        moved += 1
        if on_moved is not None:
            on_moved()
    return moved


def describe_dlq_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, str]:
    env = json.loads(AlertEntry.of(fields).envelope or b"{}")
    return {
        "id": entry_id.decode(),
        "alert": str(env.get("id", "")),
        "tenant": str(env.get("tenant") or env.get("tenant_id", "")),
        "title": str(env.get("title", "")),
        "error": fields.get(b"error", b"").decode(),
        "reason": fields.get(b"reason", b"").decode(),
        "attempts": fields.get(b"attempts", b"").decode(),
    }

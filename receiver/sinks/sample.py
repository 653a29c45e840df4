"""A sample alert and a one-shot delivery, for ``receiver sinks test NAME``."""

from __future__ import annotations

import uuid

from receiver import clock
from receiver.config.sinks import SinkSettings
from receiver.envelope import Entity, Envelope
from receiver.sinks.base import Delivery, Result, SinkError, TicketStore
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import SinkBuildError, build_sink

SAMPLE_TENANT_ID = "00000000-0000-0000-0000-000000000000"


def sample_envelope(tenant: str = "sample") -> Envelope:
    """A realistic high-severity alert; a new id each time (a ticket sink makes a new ticket)."""
    now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    alert_id = f"sample-{uuid.uuid4().hex[:12]}"
    return Envelope(
        id=alert_id,
        tenant_id=SAMPLE_TENANT_ID,
        source_api="alerts_v2",
        tenant=tenant,
        title="Sample alert from graph-alert-receiver (sinks test)",
        severity="high",
        status="new",
        category="Test",
        provider="graph-alert-receiver",
        product="sinks test",
        description="A test message sent by `receiver sinks test`. No action is needed.",
        created_at=now,
        updated_at=now,
        first_activity_at=now,
        web_url=f"https://security.microsoft.com/alerts/{alert_id}",
        entities=(Entity("user", "sample.user@example.com"), Entity("device", "sample-pc")),
    )


def describe(exc: SinkError) -> str:
    kind = "retryable" if exc.retryable else "permanent"
    parts = [kind]
    if exc.status is not None:
        parts.append(f"status {exc.status}")
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        parts.append(f"retry after {retry_after:g}s")
    return f"{', '.join(parts)}: {exc}"


async def send_sample(
    config: SinkSettings, *, tickets: TicketStore | None = None
) -> tuple[bool, str]:
    """Build the sink, send the sample alert, report (ok, text) without raising."""
    pool = ClientPool()
    try:
        try:
            sink = build_sink(config, pool=pool, metrics=SinkMetrics(), tickets=tickets)
        except SinkBuildError as exc:
            return False, f"cannot build: {exc}"
        try:
            result: Result = await sink.send(sample_envelope(), Delivery(route="sinks-test"))
        except SinkError as exc:
            return False, describe(exc)
        finally:
            await sink.aclose()
        return True, result.detail + (f" (ticket {result.ticket_id})" if result.ticket_id else "")
    finally:
        await pool.aclose()

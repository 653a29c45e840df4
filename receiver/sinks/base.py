"""What every sink is: a name, a config, and ``send(envelope)`` that raises to say whether a
failure is worth retrying. Sinks know their vendor and the envelope, nothing of streams,
retries or the dead-letter stream: the deliver stage decides from what they raise.

Exceptions::

    SinkError                 a delivery failed
    ├── RetryableError        try again later (network, timeouts, 408, 429, 5xx, throttling);
    │                         ``retry_after`` carries the server's Retry-After when it gave one
    └── PermanentError        retrying cannot help (400, 401, 403, 404, bad config, bad template)

:class:`BaseSink` is the frame the shipped sinks share (metrics, logging, only SinkErrors out);
:class:`TicketWriteBack` is the hook a deliver stage may give ticket sinks.
"""

from __future__ import annotations

import abc
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from receiver.envelope import Envelope
from receiver.redaction import redact
from receiver.sinks.metrics import SinkMetrics

log = logging.getLogger("receiver.sinks")


class SinkError(Exception):
    """A delivery failed. The message must not contain a secret (URL token, key, password)."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(SinkError):
    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(SinkError):
    retryable = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the deliver stage hands a sink besides the envelope."""

    route: str = ""  # the route that sent it (for templates and logs)
    attempt: int = 1
    # Extra recipients or settings chosen by the route (e.g. email recipients), if any.
    params: tuple[tuple[str, str], ...] = ()
    # Triage links (label, url) the message carries, signed by the deliver stage (actions).
    actions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Result:
    """What a sink reports on success (for the delivery timeline)."""

    detail: str = ""  # e.g. "created JIRA-123", "commented on INC0010001"
    ticket_id: str = ""


class TicketStore(Protocol):
    """The alert -> ticket mapping (kept in Redis by the pipeline) and a per-alert lock, so a
    ticket sink creates one ticket per alert even under retries and concurrent workers."""

    async def get(self, sink: str, tenant_id: str, alert_id: str) -> str | None: ...

    async def put(self, sink: str, tenant_id: str, alert_id: str, ticket_id: str) -> None: ...

    def lock(
        self, sink: str, tenant_id: str, alert_id: str
    ) -> AbstractAsyncContextManager[None]: ...


@runtime_checkable
class Sink(Protocol):
    name: str

    async def send(self, envelope: Envelope, delivery: Delivery) -> Result:
        """Deliver, or raise RetryableError / PermanentError."""
        ...

    async def aclose(self) -> None: ...


class TicketWriteBack(Protocol):
    """What the deliver stage may provide so a ticket sink records a new ticket on the alert
    (e.g. a Graph PATCH adding a comment or tag with the ticket's key and URL). A failure is
    logged by the sink and never fails the delivery: the ticket exists either way."""

    async def ticket_created(
        self, envelope: Envelope, sink: str, ticket_id: str, ticket_url: str
    ) -> None: ...


class GraphMailer(Protocol):
    """Graph sendMail for the email sink's graph transport (provided by the pipeline): raises
    RetryableError or PermanentError like a sink."""

    async def send_mail(self, tenant: str, sender: str, message: dict[str, Any]) -> None: ...

    async def send_mime(self, tenant: str, sender: str, mime: bytes) -> None:
        """sendMail with a whole MIME message (the only form that carries In-Reply-To and
        References, which email threads need)."""
        ...


class BaseSink(abc.ABC):
    """The common frame of the shipped sinks: timing, metrics, one log line per delivery, and
    the promise that only a SinkError (with a redacted message) leaves ``send``."""

    type: ClassVar[str] = ""

    def __init__(self, name: str, *, metrics: SinkMetrics | None = None) -> None:
        self.name = name
        self.metrics = metrics or SinkMetrics()
        self._metric_children: dict[str, tuple[Any, Any]] = {}

    @abc.abstractmethod
    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result: ...

    async def send(self, envelope: Envelope, delivery: Delivery) -> Result:
        start = time.monotonic()
        outcome = "ok"
        try:
            result = await self._send(envelope, delivery)
        except SinkError as exc:
            extra = self._log_extra(envelope, delivery)
            outcome = "retryable" if exc.retryable else "permanent"
            log.info(
                "sink %s: delivery failed (%s): %s",
                self.name,
                outcome,
                redact(str(exc)),
                extra={**extra, "status": exc.status, "reason": outcome},
            )
            raise
        except Exception as exc:
            extra = self._log_extra(envelope, delivery)
            outcome = "permanent"
            message = redact(f"{type(exc).__name__}: {exc}")
            log.error(
                "sink %s: unexpected error: %s",
                self.name,
                message,
                extra={**extra, "reason": "bug"},
            )
            raise PermanentError(f"sink {self.name}: unexpected {message}") from None
        finally:
            self._observe(outcome, time.monotonic() - start)
        if log.isEnabledFor(logging.DEBUG):  # (redaction and the dict cost per delivery)
            log.debug(
                "sink %s: delivered: %s",
                self.name,
                redact(result.detail),
                extra={
                    **self._log_extra(envelope, delivery),
                    "duration_ms": round((time.monotonic() - start) * 1000, 1),
                },
            )
        return result

    def _log_extra(self, envelope: Envelope, delivery: Delivery) -> dict[str, object]:
        return {
            "sink": self.name,
            "alert_id": envelope.id,
            "tenant_id": envelope.tenant_id,
            "attempt": delivery.attempt,
        }

    def _observe(self, outcome: str, seconds: float) -> None:
        """Count a delivery; the labelled children are looked up once per outcome."""
        children = self._metric_children.get(outcome)
        if children is None:
            children = self._metric_children[outcome] = (
                self.metrics.deliveries.labels(self.name, self.type, outcome),
                self.metrics.seconds.labels(self.name, self.type),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def aclose(self) -> None:
        return None

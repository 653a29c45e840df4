"""What every sink is: a name, a config, and ``send(envelope)`` that raises to say whether a
failure is worth retrying. Sinks know their vendor and the envelope, nothing of streams,
retries or the dead-letter stream: the deliver stage decides from what they raise.

Exceptions::

    SinkError                 a delivery failed
    ├── RetryableError        try again later (network, timeouts, 408, 429, 5xx, throttling);
    │                         ``retry_after`` carries the server's Retry-After when it gave one
    └── PermanentError        retrying cannot help (400, 401, 403, 404, bad config, bad template)
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from receiver.envelope import Envelope


class SinkError(Exception):
    """A delivery failed. The message must not contain a secret (URL token, key, password)."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(SinkError):
    retryable = True

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
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

    def lock(self, sink: str, tenant_id: str, alert_id: str
             ) -> AbstractAsyncContextManager[None]: ...


@runtime_checkable
class Sink(Protocol):
    name: str

    async def send(self, envelope: Envelope, delivery: Delivery) -> Result:
        """Deliver, or raise RetryableError / PermanentError."""
        ...

    async def aclose(self) -> None: ...

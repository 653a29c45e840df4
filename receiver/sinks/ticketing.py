"""What Jira and ServiceNow share: one ticket per alert, whatever the retries and workers.

For each delivery, under the store's per-alert lock:

1. the mapping in Redis names the ticket -> comment on it (an update) and resolve it (the alert
   is resolved); a first version whose ticket exists is a retry: nothing more to do;
2. no mapping -> search the vendor for a ticket carrying the alert's correlation mark (a create
   that timed out after the server made the ticket) -> adopt it and continue as in 1;
3. nothing found -> create, record the mapping at once, then resolve if the alert already is.

So a second ticket needs both the mapping and the vendor's search to miss it. Comments are
at-least-once: a comment whose answer was lost is posted again on retry.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from receiver.config.sinks import TEMPLATE_NAMES, TicketSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, PermanentError, Result, TicketStore
from receiver.sinks.base import TicketWriteBack as WriteBack
from receiver.sinks.http import redact
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates

log = logging.getLogger(__name__)

Config = TypeVar("Config", bound=TicketSinkSettings)
_ACCEPT_JSON = {"accept": "application/json"}


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str  # what the mapping stores and the vendor's API addresses (issue key, sys_id)
    label: str = ""  # what a human reads (issue key, INC number)
    url: str = ""

    @property
    def display(self) -> str:
        return self.label or self.id


class TicketSink(http.HttpSink[Config]):
    """A ticketing system behind HTTP basic auth (Jira: email and API token; ServiceNow:
    user and password): the connection set-up both share, their API calls (:meth:`_api`),
    their templates, and the one-ticket-per-alert logic on top of their
    find/create/comment/resolve."""

    def __init__(
        self,
        config: Config,
        pool: http.ClientPool,
        tickets: TicketStore | None,
        *,
        writeback: WriteBack | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config, pool, metrics=metrics)
        self.tickets = tickets
        self.writeback = writeback if config.writeback else None
        self._base = config.url.rstrip("/")
        user, secret = self.login()
        http.register_basic_auth(user, secret)  # redacted from every error from now on
        self._auth = httpx.BasicAuth(user, secret)
        self.templates = Templates(self.type, TEMPLATE_NAMES[self.type], config.templates)

    @abc.abstractmethod
    def login(self) -> tuple[str, str]:
        """The basic auth user and secret, from ``self.config``."""

    def _api(self, method: str, path: str, **kwargs: Any) -> Coroutine[Any, Any, httpx.Response]:
        """A call to the vendor's JSON API at ``path`` below its base URL."""
        return self._request(
            method, self._base + path, auth=self._auth, headers=_ACCEPT_JSON, **kwargs
        )

    @abc.abstractmethod
    async def find(self, envelope: Envelope) -> Ticket | None:
        """The ticket an earlier (maybe timed-out) create made for this alert, if any."""

    @abc.abstractmethod
    async def create(self, envelope: Envelope, delivery: Delivery) -> Ticket: ...

    @abc.abstractmethod
    async def comment(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> None: ...

    @abc.abstractmethod
    async def resolve(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> bool:
        """Resolve the ticket; False if configured not to."""

    @abc.abstractmethod
    def from_stored(self, stored: str) -> Ticket: ...

    @abc.abstractmethod
    def to_stored(self, ticket: Ticket) -> str: ...

    def _count(self, operation: str) -> None:
        self.metrics.tickets.labels(self.name, operation).inc()

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        if self.tickets is None:
            raise PermanentError(f"{self.type} sink {self.name}: no ticket store configured")
        store = self.tickets
        async with store.lock(self.name, envelope.tenant_id, envelope.id):
            stored = await store.get(self.name, envelope.tenant_id, envelope.id)
            ticket = self.from_stored(stored) if stored else None
            created = False
            if ticket is None:
                ticket = await self.find(envelope)
                if ticket is not None:
                    self._count("adopted")
                    log.info(
                        "sink %s: adopted existing ticket %s for alert %s",
                        self.name,
                        ticket.display,
                        envelope.id,
                        extra={
                            "sink": self.name,
                            "alert_id": envelope.id,
                            "tenant_id": envelope.tenant_id,
                        },
                    )
                else:
                    ticket = await self.create(envelope, delivery)
                    created = True
                    self._count("created")
                await store.put(self.name, envelope.tenant_id, envelope.id, self.to_stored(ticket))
            actions: list[str] = []
            if created:
                actions.append(f"created {ticket.display}")
            elif envelope.is_update:
                await self.comment(ticket, envelope, delivery)
                self._count("commented")
                actions.append(f"commented on {ticket.display}")
            else:
                actions.append(f"{ticket.display} exists")
            if envelope.status == "resolved" and await self.resolve(ticket, envelope, delivery):
                self._count("resolved")
                actions.append("resolved")
        if created and self.writeback is not None:
            await self._write_back(envelope, ticket)
        return Result(detail=", ".join(actions), ticket_id=ticket.display)

    async def _write_back(self, envelope: Envelope, ticket: Ticket) -> None:
        assert self.writeback is not None
        try:
            await self.writeback.ticket_created(envelope, self.name, ticket.display, ticket.url)
        except Exception as exc:
            log.warning(
                "sink %s: recording ticket %s on alert %s failed: %s",
                self.name,
                ticket.display,
                envelope.id,
                redact(f"{type(exc).__name__}: {exc}"),
                extra={"sink": self.name, "alert_id": envelope.id, "tenant_id": envelope.tenant_id},
            )

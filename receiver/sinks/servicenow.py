"""ServiceNow (Table API): one incident per alert (``correlation_id`` = alert id); changes become
work notes; a resolved alert resolves the incident (state 6, close code and notes). Auth: basic.

Before creating, the sink looks for ``correlation_id=<alert id>`` so a create whose answer was
lost is not repeated. The mapping stores ``sys_id`` (what the API addresses) and the number.
"""

from __future__ import annotations

import functools
from typing import Any

from receiver.config.sinks import ServiceNowSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.templating import context
from receiver.sinks.ticketing import Ticket, TicketSink

MAX_SHORT_DESCRIPTION = 160
CORRELATION_DISPLAY = "Microsoft Graph security alert"


class ServiceNowSink(TicketSink[ServiceNowSinkSettings]):
    type = "servicenow"

    def login(self) -> tuple[str, str]:
        return self.config.username, self.config.password.get_secret_value()

    @functools.cached_property
    def _table(self) -> str:
        return f"/api/now/table/{self.config.table}"

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return http.json_object(await self._api(method, path, **kwargs), what=self._what)

    def _ticket(self, record: dict[str, Any]) -> Ticket:
        sys_id = str(record.get("sys_id") or "")
        if not sys_id:
            raise PermanentError(f"servicenow sink {self.name}: record without sys_id")
        return Ticket(
            id=sys_id,
            label=str(record.get("number") or ""),
            url=f"{self._base}/nav_to.do?uri={self.config.table}.do?sys_id={sys_id}",
        )

    def from_stored(self, stored: str) -> Ticket:
        sys_id, _, number = stored.partition("|")
        return self._ticket({"sys_id": sys_id, "number": number})

    def to_stored(self, ticket: Ticket) -> str:
        return f"{ticket.id}|{ticket.label}"

    def record(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        ctx = context(envelope, delivery, self.name)
        short = " ".join(self.templates.render("short_description.txt", ctx).split())
        cfg = self.config
        record: dict[str, Any] = {
            "short_description": short[:MAX_SHORT_DESCRIPTION] or envelope.id,
            "description": self.templates.render("description.txt", ctx),
            "urgency": str(cfg.urgency.get(envelope.severity, 3)),  # type: ignore[call-overload]
            "impact": str(cfg.impact.get(envelope.severity, 3)),  # type: ignore[call-overload]
            "correlation_id": envelope.id,
            "correlation_display": CORRELATION_DISPLAY,
        }
        for key in ("caller_id", "assignment_group", "category"):
            value = getattr(cfg, key)
            if value:
                record[key] = value
        return record

    async def find(self, envelope: Envelope) -> Ticket | None:
        data = await self._call(
            "GET",
            self._table,
            params={
                "correlation_id": envelope.id,
                "sysparm_fields": "sys_id,number",
                "sysparm_limit": "1",
            },
        )
        results = data.get("result") or []
        if isinstance(results, list) and results and isinstance(results[0], dict):
            return self._ticket(results[0])
        return None

    async def create(self, envelope: Envelope, delivery: Delivery) -> Ticket:
        data = await self._call(
            "POST",
            self._table,
            json=self.record(envelope, delivery),
            params={"sysparm_fields": "sys_id,number"},
        )
        result = data.get("result")
        if not isinstance(result, dict):
            raise PermanentError(f"servicenow sink {self.name}: create answered no record")
        return self._ticket(result)

    def _notes(self, envelope: Envelope, delivery: Delivery) -> str:
        return self.templates.render("work_notes.txt", context(envelope, delivery, self.name))

    async def comment(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> None:
        if envelope.status == "resolved" and self.config.resolve:
            return  # the resolve carries the note
        await self._call(
            "PATCH",
            f"{self._table}/{ticket.id}",
            json={"work_notes": self._notes(envelope, delivery)},
            params={"sysparm_fields": "sys_id,number"},
        )

    async def resolve(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> bool:
        if not self.config.resolve:
            return False
        notes = self._notes(envelope, delivery)
        await self._call(
            "PATCH",
            f"{self._table}/{ticket.id}",
            json={
                "state": self.config.resolved_state,
                "close_code": self.config.close_code,
                "close_notes": notes,
                "work_notes": notes,
            },
            params={"sysparm_fields": "sys_id,number"},
        )
        return True

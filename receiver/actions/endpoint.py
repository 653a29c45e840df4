"""What every route of the action endpoint shares: its state, the link a request names, the
alert the link is for, and the audit of an outcome.

A step that refuses raises :class:`~receiver.actions.refusals.Refused`; the routes answer it
(confirmation.py for GET, submission.py for POST, callback.py for Entra ID's redirect).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request

from receiver.actions import audit, refusals
from receiver.actions.audit import AuditRecord
from receiver.actions.budget import NOT_FOUND, AlertCache, PageBudget
from receiver.actions.links import ActionLinks, LinkClaim, LinkError
from receiver.actions.refusals import Refused
from receiver.actions.signin import SignIn
from receiver.actions.updates import AlertNotFound, envelope, read_alert
from receiver.config.settings import Settings
from receiver.graph.client import GraphClient
from receiver.store.keys import Keys

__all__ = ["Endpoint", "client_host", "for_link", "requester"]

log = logging.getLogger(__name__)


@dataclass
class Endpoint:
    settings: Settings
    keys: Keys
    redis: Redis
    graph: GraphClient
    links: ActionLinks
    origin: str  # the scheme, host and port a POST's Origin must name
    outcomes: Counter  # receiver_actions{action, outcome}
    budget: PageBudget
    cache: AlertCache
    signin: SignIn | None = None

    def claim(self, request: Request) -> LinkClaim:
        """The request's link, genuine, current and for a tenant served here."""
        try:
            claim = self.links.signer.verify(request.path_params["token"])
        except LinkError as exc:
            self.outcomes.labels("unknown", exc.reason).inc()
            # Only a genuine signature (an expired link) is audited: forged tokens must not
            # push real records out of the capped audit stream.
            outcome = "" if exc.reason == "invalid" else exc.reason
            raise Refused(refusals.refusal(exc.reason), outcome, counted=True) from None
        if self.settings.tenant(claim.tenant_id) is None:
            self.outcomes.labels(claim.action, "wrong_tenant").inc()
            raise Refused.because("wrong_tenant", counted=True)
        return claim

    async def read(self, claim: LinkClaim) -> dict[str, Any]:
        """The alert from Graph, or ``NOT_FOUND``."""
        try:
            _, alert = await read_alert(
                self.graph, claim.tenant_id, claim.alert_id, claim.source_api
            )
        except AlertNotFound:
            return NOT_FOUND
        return alert

    def checked(self, claim: LinkClaim, alert: dict[str, Any]) -> dict[str, Any]:
        """The alert, if it exists in the link's tenant."""
        if alert is NOT_FOUND:
            raise Refused.because("not_found")
        found = envelope(claim.source_api, alert)
        if found.tenant_id and found.tenant_id != claim.tenant_id.lower():
            raise Refused.because("wrong_tenant")
        return alert

    def tenant_name(self, claim: LinkClaim) -> str:
        tenant = self.settings.tenant(claim.tenant_id)
        return tenant.name if tenant else claim.tenant_id

    async def audit(self, who: AuditRecord, *, count: bool = True, **changes: Any) -> AuditRecord:
        """Count (unless ``count`` is false: counted where it was refused), log and store the
        record with ``changes`` (the outcome among them)."""
        record = replace(who, **changes)
        if count and record.outcome not in ("pending",):
            self.outcomes.labels(record.action, record.outcome).inc()
        log.info(
            "action %s on alert %s: %s",
            record.action,
            record.alert_id or "-",
            record.outcome,
            extra={
                "alert_id": record.alert_id,
                "tenant_id": record.tenant_id,
                "reason": record.outcome,
            },
        )
        try:
            return await audit.write(self.redis, self.keys, record)
        except (RedisError, OSError):
            log.error(
                "action audit record lost (Redis unavailable)",
                extra={"alert_id": record.alert_id, "tenant_id": record.tenant_id},
            )
            return record

    async def finish(
        self, key: str, who: AuditRecord, *, count: bool = True, **changes: Any
    ) -> AuditRecord:
        """Audit the outcome and keep it as the link's state (so a reuse can say what)."""
        record = await self.audit(who, count=count, **changes)
        try:
            await self.redis.set(key, record.to_json(), xx=True, keepttl=True)
        except (RedisError, OSError):
            log.warning(
                "could not record the outcome on the action link",
                extra={"alert_id": who.alert_id, "tenant_id": who.tenant_id},
            )
        return record


def client_host(request: Request) -> str:
    return request.client.host if request.client else ""


def requester(request: Request, action: str) -> AuditRecord:
    """An audit record of who sent the request, as far as the request tells."""
    forwarded = request.headers.get("x-forwarded-for", "")
    return AuditRecord(
        action=action,
        outcome="",
        client=client_host(request)
        + (f" (X-Forwarded-For: {forwarded[:200]})" if forwarded else ""),
        user_agent=request.headers.get("user-agent", "")[:300],
    )


def for_link(record: AuditRecord, claim: LinkClaim) -> AuditRecord:
    """The record, about the link's action, alert and tenant (the nonce names the link
    without granting it)."""
    return replace(
        record,
        action=claim.action,
        alert_id=claim.alert_id,
        tenant_id=claim.tenant_id,
        source_api=claim.source_api,
        nonce=claim.nonce,
    )

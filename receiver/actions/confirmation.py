"""``GET {path}/{token}``: the confirmation page, what the link would do and a form to do it.

It changes and audits nothing: link previews, mail scanners and Safe Links fetch links, and
they must not triage alerts. With sign-in on, a browser without a session goes to Entra ID
first. The page's Graph read is cached briefly, shared by concurrent pages of one alert and
kept within the pages' own budget (budget.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from receiver.actions import pages, refusals
from receiver.actions.endpoint import Endpoint, client_host
from receiver.actions.form import MAX_NAME_CHARS
from receiver.actions.identity import Identity, SignInError
from receiver.actions.links import ACTIONS, LinkClaim
from receiver.actions.refusals import Refused
from receiver.actions.updates import envelope
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphError

__all__ = ["Confirmation"]

_AlertKey = tuple[str, str, str]  # tenant, source API, alert id


class Confirmation:
    def __init__(self, endpoint: Endpoint) -> None:
        self.e = endpoint
        # Graph reads for pages in flight, so concurrent pages of one alert share one.
        self._reading: dict[_AlertKey, asyncio.Future[dict[str, Any] | None]] = {}

    async def confirm(self, request: Request) -> Response:
        """GET: what the link would do, and a form to do it. Changes and audits nothing."""
        try:
            return await self._confirm(request)
        except Refused as refused:
            return refused.response

    async def _confirm(self, request: Request) -> Response:
        claim = self.e.claim(request)
        signed = await self._signed_in(request)
        await self._admit(request, claim)
        alert = await self._alert(claim)
        action = ACTIONS[claim.action]
        self.e.outcomes.labels(claim.action, "shown").inc()
        return pages.page(
            200,
            "ask",
            action.label,
            f"Confirm to {action.summary}.",
            alert=envelope(claim.source_api, alert),
            tenant=self.e.tenant_name(claim),
            form=True,
            label=action.label,
            need_name=claim.action == "take",
            max_name=MAX_NAME_CHARS,
            expires=_expires(claim),
            signed_in=signed,
        )

    async def _signed_in(self, request: Request) -> Identity | None:
        """With sign-in on: the person; without a session, refused with the redirect to
        Entra ID."""
        signin = self.e.signin
        if signin is None:
            return None
        try:
            who = await signin.identity(request)
            if who is not None:
                return who
            redirect = await signin.start(request.url.path)
        except SignInError as exc:
            raise Refused.because(exc.reason, exc.detail) from None
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        raise Refused(redirect)

    async def _admit(self, request: Request, claim: LinkClaim) -> None:
        """Refused: a used link, or a link (or client) shown too often this minute."""
        try:
            admitted = await self.e.budget.admit(claim.tenant_id, claim.nonce, client_host(request))
            used = await self.e.redis.get(self.e.keys.action_link(claim.nonce))
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        if used is not None:
            raise Refused(refusals.used(used))
        if not admitted:
            self.e.outcomes.labels(claim.action, "too_many_views").inc()
            raise Refused(
                refusals.too_many(
                    "This link (or your address) was opened too often in the last minute."
                )
            )

    async def _alert(self, claim: LinkClaim) -> dict[str, Any]:
        """The alert the page shows."""
        try:
            alert = await self._read(claim)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        except (GraphError, GraphAuthError) as exc:
            raise Refused(refusals.graph_unread(exc)) from None
        if alert is None:
            self.e.outcomes.labels(claim.action, "page_budget_spent").inc()
            raise Refused(
                refusals.too_many(
                    "Confirmation pages of this tenant have used their share of "
                    "Microsoft Graph for this minute."
                )
            )
        return self.e.checked(claim, alert)

    async def _read(self, claim: LinkClaim) -> dict[str, Any] | None:
        """The alert for a confirmation page: cached for a few seconds, else read from Graph
        (once for concurrent pages of one alert) within the pages' own per-tenant budget
        (None when that is spent this minute)."""
        key = (claim.tenant_id, claim.source_api, claim.alert_id)
        alert = self.e.cache.get(key)
        if alert is not None:
            return alert
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read_within_budget(claim, key))
            self._reading[key] = pending
            pending.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(pending)

    async def _read_within_budget(self, claim: LinkClaim, key: _AlertKey) -> dict[str, Any] | None:
        if not await self.e.budget.spend_read(claim.tenant_id):
            return None
        alert = await self.e.read(claim)
        self.e.cache.put(key, alert)
        return alert


def _expires(claim: LinkClaim) -> str:
    return datetime.fromtimestamp(claim.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")

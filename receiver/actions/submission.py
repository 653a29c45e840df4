"""``POST {path}/{token}`` (the confirmation page's form): the action, at most once per link.

In this order:

1. the token is verified (signature, key, expiry) and its tenant must be one we serve;
2. an ``Origin`` header, when the browser sends one, must be ours (the token is the
   capability; this only stops another site from submitting a link it learned);
3. with sign-in on, a current session and its CSRF token in the form (401/403 before the link
   is claimed otherwise); without, the name typed (needed to take an alert);
4. the link's nonce is marked used with ``SET NX`` (TTL until the link expires) *before*
   Graph is called, so of two concurrent submits exactly one acts;
5. the alert is read (it must exist in the link's tenant), checked against the triage rules
   (rules.py) and updated in Graph, then read back;
6. the action is audited (Redis stream + the alert's timeline) and the updated alert is put
   on the ``notifications`` stream, so the pipeline sends the change to the same sinks and
   tickets as an update message.

If Graph cannot be reached, the nonce is released so the person can try again; if Graph
refuses, the link stays used and the page shows Graph's code and message. A refusal with an
outcome is audited in one place (:meth:`Submission.act`), and kept on the link once the link
is claimed, so a reuse can say what happened.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from receiver.actions import pages, refusals, rules
from receiver.actions.audit import AuditRecord
from receiver.actions.endpoint import Endpoint, for_link, requester
from receiver.actions.form import clean_name, read_form
from receiver.actions.identity import Identity
from receiver.actions.links import ACTIONS, LinkClaim
from receiver.actions.postback import queue_changed
from receiver.actions.refusals import Refused
from receiver.actions.updates import Applied, apply_update, envelope, for_action
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphError, GraphUnavailable

__all__ = ["Submission"]

log = logging.getLogger(__name__)

NONCE_GRACE_S = 60


@dataclass
class _Post:
    """What a POST knows so far: the audit record it grows, and the link's key once it is
    claimed (from then on an outcome is kept on the link)."""

    who: AuditRecord
    key: str = ""


class Submission:
    def __init__(self, endpoint: Endpoint) -> None:
        self.e = endpoint

    async def act(self, request: Request) -> Response:
        """POST: the confirmed action, at most once per link. A refusal with an outcome is
        audited here, and kept on the link when the link was claimed."""
        post = _Post(requester(request, "unknown"))
        try:
            return await self._act(request, post)
        except Refused as refused:
            count = not refused.counted  # each refusal is counted once
            if refused.outcome and post.key:
                await self.e.finish(
                    post.key, post.who, count=count, outcome=refused.outcome, **refused.details
                )
            elif refused.outcome:
                await self.e.audit(
                    post.who, count=count, outcome=refused.outcome, **refused.details
                )
            return refused.response

    async def _act(self, request: Request, post: _Post) -> Response:
        claim = self.e.claim(request)
        post.who = for_link(post.who, claim)
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != self.e.origin:
            raise Refused.because("forbidden_origin")
        signed = await self._session(request)
        form = await read_form(request, self.e.settings.web.body_timeout_s)
        if form is None:
            raise Refused(refusals.bad_form())
        post.who = self._actor(claim, signed, form, post.who)
        post.key = await self._claim_link(claim, post.who)
        return await self._perform(claim, post)

    async def _session(self, request: Request) -> Identity | None:
        """With sign-in on: the signed-in person, whom a POST needs (it never redirects)."""
        if self.e.signin is None:
            return None
        try:
            signed = await self.e.signin.identity(request)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        if signed is None:
            raise Refused.because("signin_required")
        return signed

    def _actor(
        self, claim: LinkClaim, signed: Identity | None, form: dict[str, str], who: AuditRecord
    ) -> AuditRecord:
        """Who acts: the signed-in person (with the form of their own session), else the
        name typed (needed to take an alert)."""
        if signed is not None:
            assert self.e.signin is not None
            if not self.e.signin.csrf_ok(signed, form.get("csrf", "")):
                raise Refused(
                    refusals.refusal("forbidden_csrf"),
                    "forbidden_csrf",
                    by=signed.upn,
                    identity=signed.account,
                )
            return replace(who, by=signed.upn, identity=signed.account)
        name = clean_name(form.get("name", ""))
        if claim.action == "take" and not name:
            raise Refused(refusals.name_needed())
        return replace(who, by=name)

    async def _claim_link(self, claim: LinkClaim, who: AuditRecord) -> str:
        """The link's key, marked used (``SET NX``) before Graph is called: of two concurrent
        submits exactly one acts."""
        key = self.e.keys.action_link(claim.nonce)
        ttl = max(1, claim.expires_at - int(time.time())) + NONCE_GRACE_S
        pending = replace(who, outcome="pending", at=round(time.time(), 3)).to_json()
        try:
            if await self.e.redis.set(key, pending, nx=True, ex=ttl):
                return key
            used = await self.e.redis.get(key)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        raise Refused(refusals.used(used), "reused")

    async def _perform(self, claim: LinkClaim, post: _Post) -> Response:
        update = for_action(claim.action, post.who.by)
        post.who = replace(post.who, changes=update.describe())
        try:
            alert = self.e.checked(claim, await self.e.read(claim))
            # The same rules as Slack's buttons (actions/rules.py): a link pressed on a message
            # older than the alert does not take it from its owner nor reopen a resolved one.
            refused = rules.refusal(claim.action, envelope(claim.source_api, alert), post.who.by)
            if refused is not None:
                raise Refused(refusals.nothing_changed(refused), "refused", graph=refused)
            applied = await apply_update(
                self.e.graph,
                claim.tenant_id,
                claim.alert_id,
                update,
                source_api=claim.source_api,
                alert=alert,
            )
        except (GraphUnavailable, GraphAuthError) as exc:
            await self._release(post)
            raise Refused(
                refusals.graph_unavailable(exc),
                "graph_unavailable",
                graph=refusals.graph_text(exc),
                request_id=getattr(exc, "request_id", ""),
            ) from None
        except GraphError as exc:
            raise Refused(
                refusals.graph_refused(exc),
                "graph_refused",
                graph=refusals.graph_text(exc),
                request_id=exc.request_id,
            ) from None
        return await self._done(claim, post, applied)

    async def _release(self, post: _Post) -> None:
        """Graph was not reached and nothing certain happened: the link may be used again."""
        try:
            await self.e.redis.delete(post.key)
        except (RedisError, OSError):
            log.warning(
                "could not release the action link after Graph failed",
                extra={"alert_id": post.who.alert_id, "tenant_id": post.who.tenant_id},
            )
            raise Refused(refusals.store_down()) from None
        post.key = ""

    async def _done(self, claim: LinkClaim, post: _Post, applied: Applied) -> Response:
        detail = "updated" + (
            f"; comment not added: {applied.comment_error}" if applied.comment_error else ""
        )
        self.e.cache.forget((claim.tenant_id, claim.source_api, claim.alert_id))
        record = await self.e.finish(post.key, post.who, outcome="done", graph=detail)
        await queue_changed(
            self.e.redis, self.e.keys, claim.tenant_id, claim.source_api, applied.after
        )
        action = ACTIONS[claim.action]
        return pages.page(
            200,
            "ok",
            f"Done: {action.label}",
            "Microsoft Graph accepted the update; the alert now reads as below. "
            "The channels that got the alert will get an update.",
            alert=envelope(claim.source_api, applied.after),
            tenant=self.e.tenant_name(claim),
            detail=f"Recorded {datetime.fromtimestamp(record.at, UTC):%H:%M:%S} UTC "
            f"as {record.by or 'anonymous'} from {record.client}.",
        )

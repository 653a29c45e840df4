"""The action endpoint: where the links in Teams cards, Slack messages and emails lead.

``GET {path}/{token}`` shows a confirmation page and changes nothing (link previews, mail
scanners and Safe Links fetch links; they must not triage alerts). ``POST {path}/{token}``
(the page's form) acts, in this order:

1. the token is verified (signature, key, expiry) and its tenant must be one we serve;
2. an ``Origin`` header, when the browser sends one, must be ours (the token is the
   capability; this only stops another site from submitting a link it learned);
3. the link's nonce is marked used with ``SET NX`` (TTL until the link expires) *before*
   Graph is called, so of two concurrent submits exactly one acts;
4. the alert is read (it must exist in the link's tenant) and updated in Graph, then read back;
5. the action is audited (Redis stream + the alert's timeline) and the updated alert is put
   on the ``notifications`` stream, so the pipeline sends the change to the same sinks and
   tickets as an update message.

If Graph cannot be reached, the nonce is released so the person can try again; if Graph
refuses, the link stays used and the page shows Graph's code and message. Every refusal is a
page with a clear message and a 4xx (or 502/503 for Graph) status. Tokens never appear in
logs, audit records or metrics.

With ``actions.sign_in`` (signin.py), a GET without a session goes to Entra ID first and
comes back through ``{path}/signin/callback``; the page then shows who is signed in, and a
POST acts only with a current session and the session's CSRF token in the form (401/403
before the link is claimed otherwise), for the signed-in UPN instead of a typed name.

Where it runs: the web role, because analysts' browsers reach the public port. ``web/`` may
not import the Graph client, so :class:`WithActions` (plain ASGI, one prefix check) puts this
app in front of the web app; ``receiver.cli`` composes the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver.actions import audit, pages, refusals, rules
from receiver.actions.body import BodyTooLarge, read_body
from receiver.actions.budget import NOT_FOUND, AlertCache, PageBudget
from receiver.actions.links import ACTIONS, ActionLinks, LinkClaim, LinkError
from receiver.actions.postback import queue_changed
from receiver.actions.refusals import Refused
from receiver.actions.signin import Identity, SignIn, SignInError
from receiver.actions.updates import (
    AlertNotFound,
    Applied,
    apply_update,
    for_action,
    read_alert,
)
from receiver.config.settings import Settings
from receiver.envelope import Envelope, from_legacy, from_v2
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphClient, GraphError, GraphUnavailable
from receiver.store.keys import Keys

__all__ = ["WithActions", "create_actions_app", "mount"]

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 8192
MAX_NAME_CHARS = 100
NONCE_GRACE_S = 60


@dataclass
class _State:
    settings: Settings
    keys: Keys
    redis: Redis
    graph: GraphClient
    links: ActionLinks
    origin: str
    outcomes: Counter
    budget: PageBudget
    cache: AlertCache
    signin: SignIn | None = None
    # Graph reads for pages in flight, so concurrent pages of one alert share one.
    reading: dict[tuple[str, str, str], asyncio.Future[dict[str, Any] | None]] = field(
        default_factory=dict
    )


@dataclass
class _Post:
    """What a POST knows so far: the audit record it grows, and the link's key once it is
    claimed (from then on an outcome is kept on the link, so a reuse can say what happened)."""

    who: audit.AuditRecord
    key: str = ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _clean_name(raw: str) -> str:
    """A display name as typed: printable, single-line, bounded."""
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in raw)
    return " ".join(text.split())[:MAX_NAME_CHARS]


def _envelope(source_api: str, alert: dict[str, Any]) -> Envelope:
    return from_v2(alert) if source_api == "alerts_v2" else from_legacy(alert)


def _expires(claim: LinkClaim) -> str:
    return datetime.fromtimestamp(claim.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")


class _Handlers:
    def __init__(self, state: _State) -> None:
        self.s = state

    def _claim(self, request: Request) -> LinkClaim:
        try:
            claim = self.s.links.signer.verify(request.path_params["token"])
        except LinkError as exc:
            self.s.outcomes.labels("unknown", exc.reason).inc()
            # Only a genuine signature (an expired link) is audited: forged tokens must not
            # push real records out of the capped audit stream.
            outcome = "" if exc.reason == "invalid" else exc.reason
            raise Refused(refusals.refusal(exc.reason), outcome) from None
        if self.s.settings.tenant(claim.tenant_id) is None:
            self.s.outcomes.labels(claim.action, "wrong_tenant").inc()
            raise Refused.because("wrong_tenant")
        return claim

    async def _read(self, claim: LinkClaim) -> dict[str, Any]:
        """The alert from Graph, or ``NOT_FOUND``."""
        try:
            _, alert = await read_alert(
                self.s.graph, claim.tenant_id, claim.alert_id, claim.source_api
            )
        except AlertNotFound:
            return NOT_FOUND
        return alert

    def _checked(self, claim: LinkClaim, alert: dict[str, Any]) -> dict[str, Any]:
        """The alert, if it exists in the link's tenant."""
        if alert is NOT_FOUND:
            raise Refused.because("not_found")
        envelope = _envelope(claim.source_api, alert)
        if envelope.tenant_id and envelope.tenant_id != claim.tenant_id.lower():
            raise Refused.because("wrong_tenant")
        return alert

    def _tenant_name(self, claim: LinkClaim) -> str:
        tenant = self.s.settings.tenant(claim.tenant_id)
        return tenant.name if tenant else claim.tenant_id

    async def confirm(self, request: Request) -> Response:
        """GET: what the link would do, and a form to do it. Changes and audits nothing."""
        try:
            return await self._confirm(request)
        except Refused as refused:
            return refused.response

    async def _confirm(self, request: Request) -> Response:
        claim = self._claim(request)
        signed = await self._signed_in(request)
        await self._admit(request, claim)
        alert = await self._page_alert(claim)
        action = ACTIONS[claim.action]
        self.s.outcomes.labels(claim.action, "shown").inc()
        return pages.page(
            200,
            "ask",
            action.label,
            f"Confirm to {action.summary}.",
            alert=_envelope(claim.source_api, alert),
            tenant=self._tenant_name(claim),
            form=True,
            label=action.label,
            need_name=claim.action == "take",
            max_name=MAX_NAME_CHARS,
            expires=_expires(claim),
            signed_in=signed,
        )

    async def _admit(self, request: Request, claim: LinkClaim) -> None:
        """Refused: a used link, or a link (or client) shown too often this minute."""
        try:
            admitted = await self.s.budget.admit(
                claim.tenant_id, claim.nonce, _client_host(request)
            )
            used = await self.s.redis.get(self.s.keys.action_link(claim.nonce))
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        if used is not None:
            raise Refused(refusals.used(used))
        if not admitted:
            self.s.outcomes.labels(claim.action, "too_many_views").inc()
            raise Refused(
                refusals.too_many(
                    "This link (or your address) was opened too often in the last minute."
                )
            )

    async def _page_alert(self, claim: LinkClaim) -> dict[str, Any]:
        """The alert a confirmation page shows."""
        try:
            alert = await self._page_read(claim)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        except (GraphError, GraphAuthError) as exc:
            raise Refused(refusals.graph_unread(exc)) from None
        if alert is None:
            self.s.outcomes.labels(claim.action, "page_budget_spent").inc()
            raise Refused(
                refusals.too_many(
                    "Confirmation pages of this tenant have used their share of "
                    "Microsoft Graph for this minute."
                )
            )
        return self._checked(claim, alert)

    async def _page_read(self, claim: LinkClaim) -> dict[str, Any] | None:
        """The alert for a confirmation page: cached for a few seconds, else read from Graph
        (once for concurrent pages of one alert) within the pages' own per-tenant budget
        (None when that is spent this minute)."""
        key = (claim.tenant_id, claim.source_api, claim.alert_id)
        alert = self.s.cache.get(key)
        if alert is not None:
            return alert
        pending = self.s.reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read_for_page(claim, key))
            self.s.reading[key] = pending
            pending.add_done_callback(lambda _: self.s.reading.pop(key, None))
        return await asyncio.shield(pending)

    async def _read_for_page(
        self, claim: LinkClaim, key: tuple[str, str, str]
    ) -> dict[str, Any] | None:
        if not await self.s.budget.spend_read(claim.tenant_id):
            return None
        alert = await self._read(claim)
        self.s.cache.put(key, alert)
        return alert

    async def _signed_in(self, request: Request) -> Identity | None:
        """With sign-in on: the person; without a session, refused with the redirect to
        Entra ID."""
        signin = self.s.signin
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

    async def callback(self, request: Request) -> Response:
        """Entra ID's redirect after sign-in: a session, then back to the link."""
        signin = self.s.signin
        assert signin is not None  # the route exists only with sign-in
        state = request.query_params.get("state", "")
        try:
            done = await signin.finish(request)
        except SignInError as exc:
            await self._signin_refused(request, exc)
            response = refusals.refusal(exc.reason, exc.detail)
            signin.forget_flow(response, state)
            return response
        except (RedisError, OSError):
            return refusals.store_down()
        self.s.outcomes.labels("signin", "signed_in").inc()
        log.info("signed in at the action endpoint", extra={"tenant_id": done.identity.tid})
        return signin.signed_in(done, state)

    async def _signin_refused(self, request: Request, exc: SignInError) -> None:
        """Count and log the refusal; audit it when the link it was for is known."""
        log.warning("sign-in refused: %s", exc.reason, extra={"reason": exc.reason})
        if not exc.return_to:
            self.s.outcomes.labels("signin", exc.reason).inc()
            return
        record = _requester(request, "signin")
        token = exc.return_to.removeprefix(self.s.settings.actions.path + "/")
        with contextlib.suppress(LinkError):  # the link is named when it is genuine
            record = _for_link(record, self.s.links.signer.verify(token))
        await self._audit(record, outcome=exc.reason, by=exc.upn, graph=exc.detail)

    async def act(self, request: Request) -> Response:
        """POST: the confirmed action, at most once per link. A refusal with an outcome is
        audited here, and kept on the link when the link was claimed."""
        post = _Post(_requester(request, "unknown"))
        try:
            return await self._act(request, post)
        except Refused as refused:
            if refused.outcome and post.key:
                await self._finish(post.key, post.who, outcome=refused.outcome, **refused.details)
            elif refused.outcome:
                await self._audit(post.who, outcome=refused.outcome, **refused.details)
            return refused.response

    async def _act(self, request: Request, post: _Post) -> Response:
        claim = self._claim(request)
        post.who = _for_link(post.who, claim)
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != self.s.origin:
            self.s.outcomes.labels(claim.action, "forbidden_origin").inc()
            raise Refused.because("forbidden_origin")
        signed = await self._session(request)
        form = await _form(request, self.s.settings.web.body_timeout_s)
        if form is None:
            raise Refused(refusals.bad_form())
        post.who = self._actor(claim, signed, form, post.who)
        post.key = await self._claim_link(claim, post.who)
        return await self._perform(claim, post)

    async def _session(self, request: Request) -> Identity | None:
        """With sign-in on: the signed-in person, whom a POST needs (it never redirects)."""
        if self.s.signin is None:
            return None
        try:
            signed = await self.s.signin.identity(request)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        if signed is None:
            raise Refused.because("signin_required")
        return signed

    def _actor(
        self,
        claim: LinkClaim,
        signed: Identity | None,
        form: dict[str, str],
        who: audit.AuditRecord,
    ) -> audit.AuditRecord:
        """Who acts: the signed-in person (with the form of their own session), else the
        name typed (needed to take an alert)."""
        if signed is not None:
            assert self.s.signin is not None
            if not self.s.signin.csrf_ok(signed, form.get("csrf", "")):
                raise Refused(
                    refusals.refusal("forbidden_csrf"),
                    "forbidden_csrf",
                    by=signed.upn,
                    identity=signed.account,
                )
            return replace(who, by=signed.upn, identity=signed.account)
        name = _clean_name(form.get("name", ""))
        if claim.action == "take" and not name:
            raise Refused(refusals.name_needed())
        return replace(who, by=name)

    async def _claim_link(self, claim: LinkClaim, who: audit.AuditRecord) -> str:
        """The link's key, marked used (``SET NX``) before Graph is called: of two concurrent
        submits exactly one acts."""
        key = self.s.keys.action_link(claim.nonce)
        ttl = max(1, claim.expires_at - int(time.time())) + NONCE_GRACE_S
        pending = replace(who, outcome="pending", at=round(time.time(), 3)).to_json()
        try:
            if await self.s.redis.set(key, pending, nx=True, ex=ttl):
                return key
            used = await self.s.redis.get(key)
        except (RedisError, OSError):
            raise Refused(refusals.store_down()) from None
        self.s.outcomes.labels(claim.action, "reused").inc()
        raise Refused(refusals.used(used), "reused")

    async def _perform(self, claim: LinkClaim, post: _Post) -> Response:
        update = for_action(claim.action, post.who.by)
        post.who = replace(post.who, changes=update.describe())
        try:
            alert = self._checked(claim, await self._read(claim))
            # The same rules as Slack's buttons (actions/rules.py): a link pressed on a message
            # older than the alert does not take it from its owner nor reopen a resolved one.
            refused = rules.refusal(claim.action, _envelope(claim.source_api, alert), post.who.by)
            if refused is not None:
                self.s.outcomes.labels(claim.action, "refused").inc()
                raise Refused(refusals.nothing_changed(refused), "refused", graph=refused)
            applied = await apply_update(
                self.s.graph,
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
            await self.s.redis.delete(post.key)
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
        self.s.cache.forget((claim.tenant_id, claim.source_api, claim.alert_id))
        record = await self._finish(post.key, post.who, outcome="done", graph=detail)
        await queue_changed(
            self.s.redis, self.s.keys, claim.tenant_id, claim.source_api, applied.after
        )
        action = ACTIONS[claim.action]
        return pages.page(
            200,
            "ok",
            f"Done: {action.label}",
            "Microsoft Graph accepted the update; the alert now reads as below. "
            "The channels that got the alert will get an update.",
            alert=_envelope(claim.source_api, applied.after),
            tenant=self._tenant_name(claim),
            detail=f"Recorded {datetime.fromtimestamp(record.at, UTC):%H:%M:%S} UTC "
            f"as {record.by or 'anonymous'} from {record.client}.",
        )

    async def _finish(self, key: str, who: audit.AuditRecord, **changes: Any) -> audit.AuditRecord:
        """Audit the outcome and keep it as the link's state (so a reuse can say what)."""
        record = await self._audit(who, **changes)
        try:
            await self.s.redis.set(key, record.to_json(), xx=True, keepttl=True)
        except (RedisError, OSError):
            log.warning(
                "could not record the outcome on the action link",
                extra={"alert_id": who.alert_id, "tenant_id": who.tenant_id},
            )
        return record

    async def _audit(self, who: audit.AuditRecord, **changes: Any) -> audit.AuditRecord:
        record = replace(who, **changes)
        if record.outcome not in ("pending",):
            self.s.outcomes.labels(record.action, record.outcome).inc()
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
            return await audit.write(self.s.redis, self.s.keys, record)
        except (RedisError, OSError):
            log.error(
                "action audit record lost (Redis unavailable)",
                extra={"alert_id": record.alert_id, "tenant_id": record.tenant_id},
            )
            return record


def _client_host(request: Request) -> str:
    return request.client.host if request.client else ""


def _requester(request: Request, action: str) -> audit.AuditRecord:
    """An audit record of who sent the request, as far as the request tells."""
    forwarded = request.headers.get("x-forwarded-for", "")
    return audit.AuditRecord(
        action=action,
        outcome="",
        client=_client_host(request)
        + (f" (X-Forwarded-For: {forwarded[:200]})" if forwarded else ""),
        user_agent=request.headers.get("user-agent", "")[:300],
    )


def _for_link(record: audit.AuditRecord, claim: LinkClaim) -> audit.AuditRecord:
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


async def _form(request: Request, timeout_s: float) -> dict[str, str] | None:
    """An urlencoded form, bounded in size and in the time it may take to arrive (no
    multipart: the page sends a single text field)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        return None
    try:
        body = await read_body(request, MAX_FORM_BYTES, timeout_s)
    except (BodyTooLarge, TimeoutError):
        return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items() if v}


def create_actions_app(
    settings: Settings,
    *,
    redis: Redis,
    graph: GraphClient,
    registry: CollectorRegistry | None = None,
    links: ActionLinks | None = None,
) -> Starlette:
    """The action endpoint as a Starlette app (routes under ``settings.actions.path``)."""
    links = links or ActionLinks.from_settings(settings)
    keys = Keys(settings.redis.key_prefix)
    signin = SignIn(settings, redis, keys) if settings.actions.sign_in.enabled else None
    state = _State(
        settings=settings,
        keys=keys,
        redis=redis,
        graph=graph,
        links=links,
        origin=_origin(settings.actions.base_url or settings.web.public_url),
        outcomes=Counter(
            "receiver_actions",
            "Action link requests by action and outcome",
            ["action", "outcome"],
            registry=registry,
        ),
        budget=PageBudget(redis, keys),
        cache=AlertCache(),
        signin=signin,
    )
    handlers = _Handlers(state)
    path = settings.actions.path + "/{token}"
    routes = [
        Route(path, handlers.confirm, methods=["GET"]),
        Route(path, handlers.act, methods=["POST"]),
    ]
    if signin is not None:
        routes.insert(
            0, Route(signin.path + "/signin/callback", handlers.callback, methods=["GET"])
        )
    app = Starlette(routes=routes)
    app.state.signin = signin
    return app


class WithActions:
    """ASGI: ``prefix`` to the actions app, everything else (lifespan included) to ``inner``.
    ``on_shutdown`` runs when the inner app has shut down (closes what the actions app owns)."""

    def __init__(
        self,
        inner: ASGIApp,
        actions: ASGIApp,
        prefix: str,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self.actions = actions
        self.prefix = prefix
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                await self.actions(scope, receive, send)
                return
        elif scope["type"] == "lifespan" and self._on_shutdown is not None:
            on_shutdown = self._on_shutdown

            async def send_after_cleanup(message: Message) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    try:
                        await on_shutdown()
                    except Exception:
                        log.exception("closing the action endpoint failed")
                await send(message)

            await self.inner(scope, receive, send_after_cleanup)
            return
        await self.inner(scope, receive, send)


def mount(
    inner: ASGIApp,
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    redis: Redis | None = None,
    graph: GraphClient | None = None,
) -> WithActions:
    """``inner`` (the web app) with the action endpoint in front. Without ``redis``/``graph``
    it makes its own and closes them when the web app shuts down."""
    from receiver.graph.client import client_for
    from receiver.store.client import make_redis

    own_redis = redis is None
    client = redis if redis is not None else make_redis(settings.redis)
    own_graph = graph is None
    graph_client = graph if graph is not None else client_for(settings, client)

    async def close() -> None:
        signin: SignIn | None = app.state.signin
        if signin is not None:
            signin.close()
        if own_graph:
            await graph_client.aclose()
        if own_redis:
            await client.aclose()

    app = create_actions_app(settings, redis=client, graph=graph_client, registry=registry)
    return WithActions(inner, app, settings.actions.path, close)

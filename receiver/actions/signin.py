"""Sign-in with Entra ID before a triage action (``actions.sign_in``).

Why: an action link in a Teams channel or a forwarded email works for whoever holds it, and
the name typed on the confirmation page is unverified. With sign-in on, the action endpoint
shows an alert and acts only for a person Entra ID vouches for, in the configured tenant and
(when ``allowed_groups`` is set) in one of those groups, and records their UPN as the actor.

The flow, OIDC authorization code with PKCE, done by MSAL's ConfidentialClientApplication:

1. A GET of an action link without a session: ``initiate_auth_code_flow`` makes the state,
   nonce and PKCE verifier. The flow and the link to return to stay server-side in Redis for
   10 minutes under a random id; the browser gets that id in a short-lived cookie named after
   the state (so two links opened at once sign in side by side) and is sent to Entra.
2. Entra redirects to ``{path}/signin/callback?code=&state=``: the flow is taken from Redis
   (once), ``acquire_token_by_auth_code_flow`` checks the state, redeems the code with the
   verifier and checks the nonce. MSAL (since 1.38) validates nothing else in the ID token, so
   :func:`check_claims` checks issuer, audience, times and ``tid``. The signature is not
   checked: the token came straight from the token endpoint over verified TLS (OpenID Connect
   Core 3.1.3.7, step 6).
3. Groups come from the token's ``groups`` claim. Over 200 groups Entra sends an overage
   claim (``_claim_names``) instead; resolving it would need a Graph call with a permission on
   the user's memberships, so it is refused with a page saying what to change.
4. The session: a random id in an HttpOnly, SameSite=Lax cookie (Secure on https) scoped to
   the action path; Redis holds name, UPN, oid, tid, groups and a CSRF token for the form
   under a hash of the id, for ``session_ttl_s``.

``response_mode=query``, not the ``form_post`` MSAL recommends (and warns about): Entra's form
post is a cross-site POST, which does not carry a SameSite=Lax cookie, so the flow could not
be tied to the browser that started it. The code in the URL is single use, bound to a PKCE
verifier that never leaves the server, and the callback redirects at once, with no Referer.

Never logged, audited or shown: codes, tokens, cookies, the client secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.actions.identity import Identity, SignInError, check_claims, in_allowed_groups
from receiver.config.settings import Settings
from receiver.graph.auth import describe_failure, msal_options
from receiver.store.keys import Keys

__all__ = ["Completed", "SignIn"]

log = logging.getLogger(__name__)

FLOW_TTL_S = 600
SESSION_COOKIE = "receiver_session"
FLOW_COOKIE = "receiver_signin_"  # + a hash of the flow's state
CALLBACK = "/signin/callback"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_\-]{32,64}$")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _flow_cookie(state: str) -> str:
    return FLOW_COOKIE + _digest(state)[:16]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


class _NoTokenCache(msal.TokenCache):  # type: ignore[misc]
    """Nothing to keep: a sign-in needs the ID token once. (MSAL's cache would also hold every
    user's tokens in memory and log the redeemed code at DEBUG.)"""

    def add(self, event: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Completed:
    identity: Identity
    return_to: str
    session_id: str


class SignIn:
    """Sessions, and the sign-in that makes them, for the action endpoint."""

    def __init__(self, settings: Settings, redis: Redis, keys: Keys) -> None:
        conf = settings.actions.sign_in
        tenant_id = conf.tenant_id_in(settings.tenants)
        if (
            not conf.enabled
            or tenant_id is None
            or conf.client_id is None
            or (conf.client_secret is None)
        ):
            raise ValueError("sign-in is not enabled or not complete")  # settings prevent it
        self._conf = conf
        self._graph = settings.graph
        self._redis = redis
        self._keys = keys
        self.tenant_id = tenant_id
        self.client_id = conf.client_id
        self._secret = conf.client_secret.get_secret_value()
        base = (settings.actions.base_url or settings.web.public_url).rstrip("/")
        self.path = settings.actions.path
        self.redirect_uri = base + self.path + CALLBACK
        self.secure = urlsplit(base).scheme == "https"
        self.issuer = f"{self._graph.authority_host.rstrip('/')}/{tenant_id}/v2.0"
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()
        self._session: requests.Session | None = None

    # --- sessions ------------------------------------------------------------------------

    async def identity(self, request: Request) -> Identity | None:
        """The signed-in person of this request, or None (no, unknown or expired session)."""
        sid = request.cookies.get(SESSION_COOKIE, "")
        if not _COOKIE_VALUE.match(sid):
            return None
        raw = await self._redis.get(self._keys.signin_session(_digest(sid)))
        if raw is None:
            return None
        try:
            who = Identity.from_json(raw)
        except (ValueError, TypeError):
            return None
        if who.expires_at <= time.time() or who.tid != self.tenant_id.lower():
            return None
        if not in_allowed_groups(who.groups, self._conf.allowed_groups):  # changed meanwhile
            return None
        return who

    def csrf_ok(self, who: Identity, given: str) -> bool:
        return bool(who.csrf) and hmac.compare_digest(who.csrf.encode(), given.encode())

    # --- the flow --------------------------------------------------------------------------

    def _make_app(self) -> msal.ConfidentialClientApplication:
        options, session = msal_options(self._graph)
        if session is not None:
            self._session = session
        return msal.ConfidentialClientApplication(
            self.client_id,
            client_credential=self._secret,
            authority=f"{self._graph.authority_host.rstrip('/')}/{self.tenant_id}",
            token_cache=_NoTokenCache(),
            timeout=self._graph.timeout_s,
            exclude_scopes=["offline_access"],
            **options,
        )

    async def _msal(self) -> msal.ConfidentialClientApplication:
        """The MSAL app, made on first use (it reads Entra's discovery document)."""
        async with self._lock:
            if self._app is None:
                try:
                    self._app = await asyncio.to_thread(self._make_app)
                except (ValueError, requests.RequestException) as exc:
                    log.warning(
                        "sign-in unavailable: Entra ID discovery failed (%s)",
                        type(exc).__name__,
                        extra={"tenant_id": self.tenant_id},
                    )
                    raise SignInError(
                        "signin_unavailable",
                        "Entra ID could not be reached or does not know the tenant",
                    ) from None
            return self._app

    async def start(self, return_to: str) -> Response:
        """Send the browser to Entra ID, to come back to ``return_to`` signed in."""
        app = await self._msal()
        with warnings.catch_warnings():  # see the module docstring: query, on purpose
            warnings.filterwarnings(
                "ignore", message="response_mode='form_post'", category=UserWarning
            )
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                [], redirect_uri=self.redirect_uri, response_mode="query"
            )
        flow_id = secrets.token_urlsafe(32)
        record = json.dumps({"flow": flow, "return_to": return_to})
        await self._redis.set(self._keys.signin_flow(_digest(flow_id)), record, ex=FLOW_TTL_S)
        response = RedirectResponse(flow["auth_uri"], status_code=302, headers=_NO_STORE)
        self._cookie(response, _flow_cookie(flow["state"]), flow_id, FLOW_TTL_S)
        return response

    async def finish(self, request: Request) -> Completed:
        """The callback: Entra's answer in, a session out (or :class:`SignInError`)."""
        query = request.query_params
        state = query.get("state", "")
        flow_id = request.cookies.get(_flow_cookie(state), "") if state else ""
        if not _COOKIE_VALUE.match(flow_id):
            raise SignInError("signin_expired")
        raw = await self._redis.getdel(self._keys.signin_flow(_digest(flow_id)))
        if raw is None:
            raise SignInError("signin_expired")
        stored = json.loads(raw)
        flow, return_to = stored["flow"], str(stored["return_to"])
        if query.get("error"):
            text = _first_line(query.get("error_description", ""))
            raise SignInError(
                "signin_failed",
                f"Entra ID answered {query['error'][:60]}: {text}",
                return_to=return_to,
            )
        code = query.get("code", "")
        claims = await self._redeem(flow, code, state, return_to)
        try:
            who = check_claims(
                claims,
                client_id=self.client_id,
                tenant_id=self.tenant_id,
                issuer=self.issuer,
                allowed_groups=self._conf.allowed_groups,
                now=time.time(),
            )
        except SignInError as exc:
            exc.return_to = return_to
            raise
        sid = secrets.token_urlsafe(32)
        ttl = self._conf.session_ttl_s
        who = replace(who, csrf=secrets.token_urlsafe(32), expires_at=time.time() + ttl)
        await self._redis.set(self._keys.signin_session(_digest(sid)), who.to_json(), ex=ttl)
        return Completed(who, return_to, sid)

    async def _redeem(
        self, flow: dict[str, Any], code: str, state: str, return_to: str
    ) -> Mapping[str, Any]:
        app = await self._msal()
        try:
            result: dict[str, Any] = await asyncio.to_thread(
                app.acquire_token_by_auth_code_flow, flow, {"code": code, "state": state}
            )
        except requests.RequestException as exc:
            raise SignInError(
                "signin_unavailable",
                f"Entra ID could not be reached ({type(exc).__name__})",
                return_to=return_to,
            ) from None
        except (ValueError, RuntimeError):  # state or nonce mismatch (MSAL's checks)
            raise SignInError(
                "signin_failed",
                "the answer does not belong to this sign-in (state or nonce mismatch)",
                return_to=return_to,
            ) from None
        if "error" in result:
            message, _, _ = describe_failure(result)
            if code:
                message = message.replace(code, "[code]")
            raise SignInError("signin_failed", message, return_to=return_to)
        claims = result.get("id_token_claims")
        if not isinstance(claims, Mapping):
            raise SignInError("signin_failed", "Entra ID sent no ID token", return_to=return_to)
        return claims

    def signed_in(self, done: Completed, state: str) -> Response:
        """Back to the link, with the session cookie set and the flow's cookie gone."""
        response = RedirectResponse(done.return_to, status_code=303, headers=_NO_STORE)
        self._cookie(response, SESSION_COOKIE, done.session_id, self._conf.session_ttl_s)
        self.forget_flow(response, state)
        return response

    def forget_flow(self, response: Response, state: str) -> None:
        if state:
            response.delete_cookie(
                _flow_cookie(state),
                path=self.path,
                secure=self.secure,
                httponly=True,
                samesite="lax",
            )

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.path,
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

"""App-only tokens for Microsoft Graph: one MSAL ConfidentialClientApplication per tenant.

The credential is the tenant's client secret or certificate (PEM private key + SHA-1
thumbprint, optional passphrase and public certificate). Tokens live in MSAL's in-memory
cache, which serves them until shortly before expiry; MSAL is synchronous, so every call
runs in a worker thread (``asyncio.to_thread``), one at a time per tenant.

Errors: :class:`GraphAuthError` names the tenant and says what Entra answered (error,
AADSTS code, first line of the description) and never carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
import requests

from receiver.config.settings import GraphSettings, TenantSettings
from receiver.graph.call import GraphCall

log = logging.getLogger(__name__)

GRAPH_SCOPES = ["https://graph.microsoft.com/.default"]
HOT_MARGIN_S = 360.0  # stop serving a token from memory this long before it expires
# Microsoft's own authorities: MSAL's instance discovery knows these.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.microsoftonline.de",
        "login.windows.net",
        "login.partner.microsoftonline.cn",
    }
)


class GraphAuthError(Exception):
    """Entra ID refused (or could not be asked for) a token for one tenant."""

    def __init__(
        self,
        tenant: str,
        tenant_id: str,
        message: str,
        *,
        error: str = "",
        codes: Sequence[int] = (),
    ) -> None:
        super().__init__(f"tenant {tenant} ({tenant_id}): {message}")
        self.tenant = tenant
        self.tenant_id = tenant_id
        self.error = error
        self.codes = tuple(codes)


def _credential(tenant: TenantSettings) -> str | dict[str, str]:
    if tenant.client_secret is not None:
        return tenant.client_secret.get_secret_value()
    cert = tenant.certificate
    assert cert is not None  # settings guarantee one credential
    out = {
        "private_key": cert.private_key_file.read_text(encoding="utf-8"),
        "thumbprint": cert.thumbprint.upper(),
    }
    if cert.passphrase is not None:
        out["passphrase"] = cert.passphrase.get_secret_value()
    if cert.public_certificate_file is not None:
        out["public_certificate"] = cert.public_certificate_file.read_text(encoding="utf-8")
    return out


def _secrets_of(tenant: TenantSettings) -> list[str]:
    out = []
    if tenant.client_secret is not None:
        out.append(tenant.client_secret.get_secret_value())
    if tenant.certificate is not None and tenant.certificate.passphrase is not None:
        out.append(tenant.certificate.passphrase.get_secret_value())
    return [s for s in out if s]


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


def describe_failure(result: dict[str, Any]) -> tuple[str, str, list[int]]:
    """(message, error, AADSTS codes) of an MSAL error result."""
    error = str(result.get("error") or "unknown_error")
    codes = [int(c) for c in result.get("error_codes") or [] if isinstance(c, int)]
    description = str(result.get("error_description") or "").strip()
    first = description.splitlines()[0].strip() if description else ""
    code_text = f" AADSTS{codes[0]}" if codes and f"AADSTS{codes[0]}" not in first else ""
    return f"Entra ID refused the token request: {error}{code_text}: {first}", error, codes


def msal_options(graph: GraphSettings) -> tuple[dict[str, Any], requests.Session | None]:
    """The MSAL client options every app of ours shares, and the HTTP session made for a CA
    bundle (the caller closes it): instance discovery only against Microsoft's own hosts
    with the system trust store; with a CA bundle (the simulator), a session that verifies
    against it."""
    host = (urlsplit(graph.authority_host).hostname or "").lower()
    options: dict[str, Any] = {
        "instance_discovery": graph.ca_bundle is None and host in MICROSOFT_AUTHORITY_HOSTS
    }
    session = None
    if graph.ca_bundle is not None:
        # trust_env off: with it on, REQUESTS_CA_BUNDLE silently overrides `verify`.
        session = requests.Session()
        session.verify = str(graph.ca_bundle)
        session.trust_env = False
        options["http_client"] = session
    return options, session


class TokenProvider:
    """Access tokens for Graph, per tenant of the settings."""

    def __init__(self, graph: GraphSettings, tenants: Sequence[TenantSettings]) -> None:
        self._graph = graph
        self._tenants = {t.tenant_id: t for t in tenants}
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._sessions: list[requests.Session] = []
        self._locks: dict[str, asyncio.Lock] = {}
        # tenant -> (token, monotonic time to stop using it): spares a thread hop per call.
        self._hot: dict[str, tuple[str, float]] = {}

    def tenant(self, tenant_id: str) -> TenantSettings:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise GraphAuthError("?", tenant_id, "not a tenant of this deployment") from None

    def _authority(self, tenant_id: str) -> str:
        return f"{self._graph.authority_host.rstrip('/')}/{tenant_id}"

    def _make_app(self, tenant: TenantSettings) -> msal.ConfidentialClientApplication:
        options, session = msal_options(self._graph)
        if session is not None:
            self._sessions.append(session)
        try:
            credential = _credential(tenant)
        except OSError as exc:
            raise GraphAuthError(
                tenant.name, tenant.tenant_id, f"cannot read the certificate: {exc.strerror}"
            ) from None
        try:
            return msal.ConfidentialClientApplication(
                tenant.client_id,
                client_credential=credential,
                authority=self._authority(tenant.tenant_id),
                token_cache=msal.TokenCache(),
                timeout=self._graph.timeout_s,
                **options,
            )
        except ValueError as exc:  # bad authority, bad key or passphrase, tenant discovery
            message = _redact(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__, _secrets_of(tenant)
            )
            raise GraphAuthError(
                tenant.name, tenant.tenant_id, f"cannot set up the MSAL client: {message}"
            ) from None

    def _acquire(self, tenant: TenantSettings) -> tuple[str, float]:
        app = self._apps.get(tenant.tenant_id)
        try:
            if app is None:
                app = self._apps[tenant.tenant_id] = self._make_app(tenant)
            result = app.acquire_token_for_client(GRAPH_SCOPES)
        except requests.RequestException as exc:
            raise GraphAuthError(
                tenant.name,
                tenant.tenant_id,
                f"cannot reach Entra ID at {self._graph.authority_host}: {type(exc).__name__}",
            ) from None
        if "access_token" in result:
            lifetime = float(result.get("expires_in") or 0)
            return str(result["access_token"]), lifetime
        message, error, codes = describe_failure(result)
        raise GraphAuthError(
            tenant.name,
            tenant.tenant_id,
            _redact(message, _secrets_of(tenant)),
            error=error,
            codes=codes,
        )

    async def token(self, tenant_id: str) -> str:
        """A valid access token for ``tenant_id`` (from the cache when it has one)."""
        hot = self._hot.get(tenant_id)
        if hot is not None and time.monotonic() < hot[1]:
            return hot[0]
        tenant = self.tenant(tenant_id)
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            hot = self._hot.get(tenant_id)
            if hot is not None and time.monotonic() < hot[1]:
                return hot[0]
            started = time.monotonic()
            token, lifetime = await asyncio.to_thread(self._acquire, tenant)
            # MSAL refreshes 5 minutes before expiry; ask it again a little before that.
            self._hot[tenant_id] = (token, started + max(0.0, lifetime - HOT_MARGIN_S))
            return token

    def close(self) -> None:
        """Close the HTTP sessions of the MSAL clients (their keep-alive connections)."""
        for session in self._sessions:
            session.close()
        self._sessions.clear()
        self._apps.clear()
        self._hot.clear()

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's cached tokens (after Graph refused one)."""
        self._hot.pop(tenant_id, None)
        self._apps.pop(tenant_id, None)


class GraphAuth(httpx.Auth):
    """The bearer token of the request's tenant (its :class:`GraphCall`), as an httpx auth
    flow: get the token, send; on a 401 (a revoked or rotated token) forget the tenant's
    token, get a fresh one and send once more. Once per Graph call: the retries of one
    ``GraphClient.request`` share its GraphCall, so a second 401 is Graph's answer."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, tokens: TokenProvider) -> None:
        self.tokens = tokens

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("GraphAuth is for the async Graph client only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        call = GraphCall.of(request)
        if call is None:
            raise RuntimeError("a Graph request without its tenant (GraphCall extension)")
        request.headers["Authorization"] = f"Bearer {await self.tokens.token(call.tenant_id)}"
        response = yield request
        if response.status_code != 401 or call.refreshed:
            return
        call.refreshed = True
        self.tokens.forget(call.tenant_id)
        request.headers["Authorization"] = f"Bearer {await self.tokens.token(call.tenant_id)}"
        request.headers["client-request-id"] = str(uuid.uuid4())  # a new request, a new id
        yield request

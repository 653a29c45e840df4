"""The Graph client: one shared HTTP/2 connection pool, tokens, retries, the rate limiter.

Layered the httpx way, each layer about one thing::

    GraphClient.request     URL (nextLink origin check), Prefer header, retries (5xx/429,
                            Retry-After, wait budget; receiver.backoff)
      GraphAuth             httpx.Auth: the tenant's bearer token, one refresh after a 401
        RateLimitedTransport  the per-tenant limiter (security bucket), then
          Transport         the real HTTP transport (receiver.transport)

The tenant and bucket travel with the request as a GraphCall in ``request.extensions``
(receiver.graph.call), never on the wire.

Retries are a small explicit loop rather than stamina or tenacity: the decision needs the
response (Retry-After in seconds, fractional seconds or an HTTP date, only on 429/503), the
wait must be capped by a total budget, and each attempt must pass the rate limiter again. That
is a dozen lines here, and neither library is otherwise a dependency. The waits go through an
injectable ``sleep``, which is the testing switch: tests pass one that records (and shortens)
the waits; production code never asks whether it runs in a test.

Exceptions::

    GraphError            a Graph answer that is not a success (status, code, request_id)
      GraphUnavailable    network failure or 5xx/429 after the retries and the wait budget
      ForeignLink         an absolute URL (an ``@odata.nextLink``) off the Graph origin
    GraphAuthError        (receiver.graph.auth) no token for the tenant
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from receiver import backoff
from receiver.config.settings import GraphSettings, Settings
from receiver.config.values import parse_retry_after
from receiver.graph.auth import GraphAuth, TokenProvider
from receiver.graph.call import GraphCall
from receiver.graph.ratelimit import RateLimitedTransport, RateLimiter
from receiver.store.keys import Keys
from receiver.transport import Client, Transport

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
# The rate-limited Graph families, by the first path segment(s) (Graph's per-tenant limits).
SECURITY_BUCKET = "security"
# alerts_v2 and incidents have evolvable enums: members listed after `unknownFutureValue`
# (serviceSource microsoftSentinel, incident status awaitingAction, ...) come back as
# `unknownFutureValue` unless the request asks for them with this preference.
PREFER_UNKNOWN_ENUMS = "include-unknown-enum-members"


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str = "",
        method: str = "",
        path: str = "",
        tenant_id: str = "",
    ) -> None:
        where = f"{method} {path}".strip()
        text = f"Graph {status} {code}: {message}"
        if where:
            text += f" ({where}"
            text += f", tenant {tenant_id}" if tenant_id else ""
            text += f", request-id {request_id})" if request_id else ")"
        super().__init__(text)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.tenant_id = tenant_id


class GraphUnavailable(GraphError):
    """Graph could not be reached, or kept failing, within the retry budget."""


class ForeignLink(GraphError):
    """An absolute URL (Graph's ``@odata.nextLink``, or any path given whole) that is not on
    the configured Graph origin. Refused before a token is fetched: the bearer token goes to
    ``graph_url``'s scheme, host and port and nowhere else, whatever a page says."""


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _shown(url: httpx.URL) -> str:
    """A refused link for the log: scheme, host and port only (no path, query or userinfo)."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def bucket_of(path: str) -> str | None:
    """The rate-limit bucket of a Graph path: ``security/...`` shares one; others none."""
    first = path.lstrip("/").split("?", 1)[0].split("/", 1)[0].lower()
    return SECURITY_BUCKET if first == "security" else None


def error_fields(body: Any) -> tuple[str, str] | None:
    """The code and message of Graph's error body ``{"error": {"code", "message"}}``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return None


def request_id_of(headers: Mapping[str, str]) -> str:
    """Graph's id of an answer (``request-id``, else the echoed ``client-request-id``), from
    an answer's headers or a batch item's (names lower-cased)."""
    return headers.get("request-id") or headers.get("client-request-id") or ""


def retry_after_of(status: int, headers: Mapping[str, str]) -> float | None:
    """The wait Graph asks for before a retry: ``Retry-After``, read on 429 and 503 only."""
    return parse_retry_after(headers.get("retry-after")) if status in (429, 503) else None


def failure_of(
    status: int,
    body: Any,
    headers: Mapping[str, str],
    reason: str,
    *,
    method: str,
    path: str,
    tenant_id: str,
) -> GraphError:
    """The error for a Graph answer that is not a success, direct or a batch item's:
    GraphUnavailable for what is retried (5xx, 429), else GraphError; the code and message
    of its error body, else ``reason``."""
    code, message = error_fields(body) or ("", reason)
    cls = GraphUnavailable if status in RETRY_STATUSES else GraphError
    return cls(
        status,
        code,
        message,
        request_id=request_id_of(headers),
        method=method,
        path=path,
        tenant_id=tenant_id,
    )


def preferences(bucket: str | None) -> dict[str, str]:
    """The ``Prefer`` header a request of ``bucket`` carries: security reads ask for the
    evolvable enums' members (PREFER_UNKNOWN_ENUMS)."""
    return {"Prefer": PREFER_UNKNOWN_ENUMS} if bucket == SECURITY_BUCKET else {}


class GraphClient:
    """Graph calls for every tenant of one deployment, over one ``httpx.AsyncClient``."""

    def __init__(
        self,
        settings: GraphSettings,
        tokens: TokenProvider,
        limiter: RateLimiter | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self._sleep = sleep
        # The CA bundle given (the simulator's test CA), else the system's trust store.
        verify = (
            ssl.create_default_context(cafile=str(settings.ca_bundle))
            if settings.ca_bundle
            else ssl.create_default_context()
        )
        self.transport = RateLimitedTransport(
            transport
            or Transport(
                http2=True,
                verify=verify,
                trust_env=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            ),
            limiter,
        )
        self.http = Client(
            transport=self.transport,
            auth=GraphAuth(tokens),
            trust_env=False,
            timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5.0)),
            headers={"Accept": "application/json"},
        )
        self.waited_s = 0.0  # time spent waiting between retries
        self.registry = registry if registry is not None else CollectorRegistry()
        self.refused_links = Counter(
            "receiver_graph_refused_links",
            "Absolute URLs (@odata.nextLink) off the configured "
            "Graph origin, refused without sending the token",
            registry=self.registry,
        )

    @property
    def calls(self) -> int:
        """Requests sent, retries and token refreshes included."""
        return self.transport.sent

    async def aclose(self) -> None:
        await self.http.aclose()
        await asyncio.to_thread(self.tokens.close)

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        """The URL for ``path``: relative to ``graph_url``; an absolute URL (a nextLink) only
        when it has graph_url's scheme, host and port and no userinfo (else ForeignLink). So
        plain http is followed only when graph_url itself is http (a loopback test Graph)."""
        base = self.settings.graph_url.rstrip("/")
        if "://" not in path and not path.startswith("//"):
            return f"{base}/{path.lstrip('/')}"
        try:
            target = httpx.URL(path)
        except (httpx.InvalidURL, ValueError):
            raise ForeignLink(0, "ForeignLink", "not a valid URL") from None
        if target.userinfo or _origin(target) != _origin(httpx.URL(base)):
            raise ForeignLink(
                0, "ForeignLink", f"{_shown(target)} is not the Graph origin, refused"
            )
        return path

    async def request(
        self,
        tenant_id: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """One Graph call with retries; the response when it is a success (2xx). ``content``
        (with its ``content_type``) is a body that is not JSON (sendMail's base64 MIME)."""
        try:
            url = self.url(path)
        except ForeignLink as exc:
            self.refused_links.inc()
            log.warning(
                "graph %s: %s",
                method,
                exc.message,
                extra={"tenant_id": tenant_id, "reason": "foreign_link"},
            )
            raise ForeignLink(
                0, exc.code, exc.message, method=method, tenant_id=tenant_id
            ) from None
        bucket = bucket_of(
            path
            if not path.startswith("http")
            else url.removeprefix(self.settings.graph_url.rstrip("/"))
        )
        call = GraphCall(tenant_id, bucket)
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            headers = {"client-request-id": str(uuid.uuid4()), **preferences(bucket)}
            if content_type is not None:
                headers["Content-Type"] = content_type
            wait: float | None
            try:
                response = await self.http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    content=content,
                    headers=headers,
                    extensions=call.attach({}),
                )
            except httpx.TransportError as exc:
                failure: GraphError = GraphUnavailable(
                    0,
                    type(exc).__name__,
                    "network error",
                    method=method,
                    path=path,
                    tenant_id=tenant_id,
                )
                wait = None
            else:
                if response.is_success:
                    return response
                status = response.status_code
                try:
                    body = response.json()
                except ValueError:
                    body = None
                failure = failure_of(
                    status,
                    body,
                    response.headers,
                    response.reason_phrase,
                    method=method,
                    path=path,
                    tenant_id=tenant_id,
                )
                if status not in RETRY_STATUSES:
                    raise failure
                wait = retry_after_of(status, response.headers)
            waited += await self.before_retry(
                f"{method} {path}", attempt, waited, failure, wait, tenant_id
            )

    async def before_retry(
        self,
        what: str,
        attempt: int,
        waited: float,
        failure: GraphError,
        retry_after: float | None,
        tenant_id: str,
    ) -> float:
        """Wait before the retry of ``attempt`` (its Retry-After, else a jittered exponential
        backoff) through the injectable ``sleep``, and say so; the wait. ``failure`` is
        raised instead when the retries or the total wait budget (``max_retry_wait_s``,
        ``waited`` so far) are spent."""
        if attempt > self.settings.max_retries:
            raise failure
        wait = retry_after
        if wait is None:
            wait = backoff.full_jitter(backoff.exponential(attempt, BACKOFF_BASE_S, BACKOFF_MAX_S))
        if waited + wait > self.settings.max_retry_wait_s:
            raise failure
        log.info(
            "graph %s: %s, retry %d in %.3fs",
            what,
            failure.status or failure.code,
            attempt,
            wait,
            extra={
                "tenant_id": tenant_id,
                "attempt": attempt,
                "status": failure.status,
                "request_id": failure.request_id,
            },
        )
        self.waited_s += wait
        await self._sleep(wait)
        return wait

    async def get(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return _json(await self.request(tenant_id, "GET", path, params=params))

    async def post(self, tenant_id: str, path: str, body: Any = None) -> dict[str, Any]:
        return _json(await self.request(tenant_id, "POST", path, json=body))

    async def patch(self, tenant_id: str, path: str, body: Any) -> dict[str, Any]:
        return _json(await self.request(tenant_id, "PATCH", path, json=body))

    async def delete(self, tenant_id: str, path: str) -> None:
        await self.request(tenant_id, "DELETE", path)

    async def pages(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink``.

        A 2xx answer that is not a collection page (not a JSON object with a ``value`` list:
        a proxy's HTML error page, an empty or truncated body) raises GraphError rather than
        reading as the end of the collection, so a poller does not move its watermark past
        items it never saw (tests/fuzz/test_poller_pages.py)."""
        page = await self._page(tenant_id, path, params)
        while True:
            for item in page["value"]:
                if isinstance(item, dict):
                    yield item
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                return
            page = await self._page(tenant_id, link, None)

    async def _page(
        self, tenant_id: str, path: str, params: dict[str, str] | None
    ) -> dict[str, Any]:
        response = await self.request(tenant_id, "GET", path, params=params)
        try:
            page = response.json()
        except ValueError:
            page = None
        if not isinstance(page, dict) or not isinstance(page.get("value"), list):
            raise GraphError(
                response.status_code,
                "MalformedPage",
                "the answer is not a collection page (no JSON 'value' list)",
                request_id=request_id_of(response.headers),
                method="GET",
                path=path.split("?", 1)[0],
                tenant_id=tenant_id,
            )
        return page


def _json(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"value": body}


def client_for(settings: Settings, redis: Redis) -> GraphClient:
    """The deployment's Graph client: MSAL tokens for its tenants, the shared rate limiter."""
    graph = settings.graph
    limiter = RateLimiter(
        redis,
        Keys(settings.redis.key_prefix),
        {SECURITY_BUCKET: (graph.rate_limit_per_minute, graph.rate_limit_window_s)},
    )
    return GraphClient(graph, TokenProvider(graph, settings.tenants), limiter)

"""HTTP for sinks: the one retry decision, the shared client, secret redaction, and the frame
of the sinks that speak HTTP (:class:`HttpSink`).

The retry decision, made here and nowhere else (:func:`classify` for answers,
:func:`transport_error` for failures to get one)::

    2xx                       ok (a sink may ask to read throttling out of a 2xx body: Teams
                              answers some throttling with 200 and "HTTP error 429" in the text)
    408, 425, 429             RetryableError, retry_after from Retry-After (seconds or HTTP date)
    409                       RetryableError: a conflicting concurrent change; trying again later
                              sees the settled state
    500, 502-504, 507, 5xx    RetryableError (Retry-After honoured, e.g. on 503)
    501, 505                  PermanentError: the server will never support the request
    3xx                       PermanentError: redirects are not followed (a webhook URL that
                              redirects is misconfigured, and following it could leak the body)
    other 4xx (400, 401, 403, 404, 405, 410, 413, 422, ...)   PermanentError
    timeouts, connection refused/reset, DNS, protocol errors  RetryableError
    TLS certificate verification failure                      PermanentError (see below)
    other TLS errors (handshake reset, ...)                   RetryableError
    a vendor API's 2xx that is not a JSON object              PermanentError (a proxy's page,
                              a wrong URL); RetryableError where the vendor may answer so in
                              passing (Slack's Web API) (:func:`json_object`)

TLS verification failure is permanent: an unknown CA, an expired or mismatched certificate does
not heal in the minutes a retry schedule spans, and retrying against a possible interceptor is
pointless. It needs an operator (fix ``ca_bundle`` or the server), who then replays the
dead-lettered deliveries.

Redaction: webhook URLs carry tokens, and keys and passwords must never reach a log line or an
error. Sinks register their secrets (:func:`register_secret`, into :mod:`receiver.redaction`);
:func:`redact` replaces them, and a filter on httpx's logger (which logs every request URL at
INFO) does the same for its lines. A server's answer is redacted whole before it is cut into an
error (:func:`receiver.redaction.cut`): a webhook that echoes its URL must not leave the part of
the token before the cut. Errors name an endpoint by scheme and host only (:func:`safe_url`).
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from receiver import redaction
from receiver.config.values import parse_retry_after
from receiver.redaction import REDACTED, redact
from receiver.sinks.base import BaseSink, PermanentError, RetryableError, SinkError
from receiver.sinks.metrics import SinkMetrics
from receiver.transport import Client, Transport

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "REDACTED",
    "ClientPool",
    "HttpSink",
    "classify",
    "json_object",
    "parse_retry_after",
    "redact",
    "register_basic_auth",
    "register_secret",
    "register_url",
    "request",
    "safe_url",
    "transport_error",
]

DEFAULT_TIMEOUT_S = 10.0
RETRY_STATUSES = frozenset({408, 409, 425, 429})
PERMANENT_5XX = frozenset({501, 505})
_BODY_ERROR = re.compile(r"(?i)\berror\b\D{0,32}?\b([1-5]\d\d)\b")
_MAX_BODY_IN_ERROR = 200
_MIN_TOKEN = 12


# --- redaction ---------------------------------------------------------------------------


def register_secret(value: str | None) -> None:
    """Make ``value`` (and its URL-encoded forms) redacted wherever :func:`redact` runs."""
    if not value or len(value) < redaction.MIN_SECRET:
        return
    redaction.register(value, quote(value, safe=""), quote(value, safe="/:"))


def register_url(url: str) -> None:
    """Register a URL that carries a token (Teams, Slack, webhooks): the URL, its path and query,
    every path suffix and query value long enough to be a token (a vendor may echo any)."""
    register_secret(url)
    parsed = urlsplit(url)
    register_secret(parsed.path + ("?" + parsed.query if parsed.query else ""))
    register_secret(parsed.query)
    segments = [p for p in parsed.path.split("/") if p]
    for i in range(len(segments)):
        suffix = "/".join(segments[i:])
        if len(suffix) >= _MIN_TOKEN:
            register_secret(suffix)
    for _, value in parse_qsl(parsed.query, keep_blank_values=False):
        if len(value) >= _MIN_TOKEN:
            register_secret(value)


def register_basic_auth(user: str, secret: str) -> None:
    """Register a password and the Basic authorization value made from it."""
    register_secret(secret)
    register_secret(base64.b64encode(f"{user}:{secret}".encode()).decode())


def safe_url(url: str | httpx.URL) -> str:
    """Scheme, host and port only: the path and query of a webhook URL are its token."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}/…"


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _RedactingFilter()
for _name in (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "aiosmtplib",
):
    logging.getLogger(_name).addFilter(_FILTER)


# --- classification ----------------------------------------------------------------------


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    return redaction.cut(text, _MAX_BODY_IN_ERROR, squeeze=True)


def classify(response: httpx.Response, *, what: str = "request", body_errors: bool = False) -> None:
    """Return if ``response`` is a success, else raise the classified SinkError.

    ``body_errors``: a 2xx whose body reports an HTTP error (Teams: "Microsoft Teams endpoint
    returned HTTP error 429 ...") is classified by that embedded status instead.
    """
    status = response.status_code
    where = f"{what}: {response.request.method} {safe_url(response.request.url)}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if 200 <= status < 300:
        if not body_errors:
            return
        match = _BODY_ERROR.search(_snippet(response))
        if match is None:
            return
        embedded = int(match.group(1))
        detail = f"{where} answered {status} reporting HTTP error {embedded}"
        if embedded == 429 or embedded >= 500 or embedded in RETRY_STATUSES:
            raise RetryableError(
                f"{detail} (throttled or unavailable)", status=embedded, retry_after=retry_after
            )
        raise PermanentError(detail, status=embedded)
    body = _snippet(response)
    detail = f"{where} answered HTTP {status}" + (f": {body}" if body else "")
    if status in RETRY_STATUSES or (status >= 500 and status not in PERMANENT_5XX):
        raise RetryableError(detail, status=status, retry_after=retry_after)
    raise PermanentError(detail, status=status)


def json_object(response: httpx.Response, *, what: str, retryable: bool = False) -> dict[str, Any]:
    """The JSON object a vendor's API answered with, or the SinkError for an answer that is not
    one: permanent, or retryable where the vendor may answer so in passing (``retryable``)."""
    try:
        data = response.json()
    except ValueError:
        problem = "answer is not JSON"
    else:
        if isinstance(data, dict):
            return data
        problem = "answer is not a JSON object"
    error = RetryableError if retryable else PermanentError
    raise error(f"{what}: {problem}", status=response.status_code)


def _is_cert_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(node):
            return True
        node = node.__cause__ or node.__context__
    return False


def transport_error(exc: Exception, *, what: str, url: str | httpx.URL) -> SinkError:
    """The SinkError for a request that got no answer (timeout, network, TLS)."""
    where = f"{what}: {safe_url(url)}"
    if _is_cert_failure(exc):
        return PermanentError(
            f"{where}: TLS certificate verification failed "
            "(set ca_bundle or fix the server's certificate)"
        )
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{where}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError | ssl.SSLError | OSError):
        reason = redact(str(exc)) or type(exc).__name__
        return RetryableError(f"{where}: {type(exc).__name__}: {reason}")
    return PermanentError(f"{where}: {type(exc).__name__}")


# --- the shared client -------------------------------------------------------------------


class ClientPool:
    """One ``httpx.AsyncClient`` per CA bundle for all sinks of a process (connection reuse);
    timeouts are given per request by each sink."""

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout = httpx.Timeout(timeout_s)
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, ca_bundle: Path | None = None) -> httpx.AsyncClient:
        key = str(ca_bundle) if ca_bundle is not None else ""
        client = self._clients.get(key)
        if client is None:
            verify: ssl.SSLContext | bool = True
            if ca_bundle is not None:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            client = Client(
                timeout=self._timeout,
                follow_redirects=False,
                transport=Transport(
                    verify=verify,
                    limits=httpx.Limits(max_connections=100, max_keepalive_connections=64),
                ),
                headers={"user-agent": "graph-alert-receiver"},
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    timeout_s: float,
    body_errors: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """Send, classify, return the successful response (or raise the classified SinkError)."""
    try:
        response = await client.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.HTTPError as exc:
        raise transport_error(exc, what=what, url=url) from None
    except (ssl.SSLError, OSError) as exc:
        raise transport_error(exc, what=what, url=url) from None
    classify(response, what=what, body_errors=body_errors)
    return response


# --- the frame of HTTP sinks -------------------------------------------------------------


class HttpSinkConfig(Protocol):
    """What every HTTP sink's settings carry."""

    @property
    def name(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def ca_bundle(self) -> Path | None: ...


Config = TypeVar("Config", bound=HttpSinkConfig)


class HttpSink(BaseSink, Generic[Config]):
    """A sink that speaks HTTP to its vendor: its settings, its client from the shared pool,
    and :meth:`_request`, one request through :func:`request` within the sink's timeout, its
    errors naming the sink."""

    def __init__(
        self, config: Config, pool: ClientPool, *, metrics: SinkMetrics | None = None
    ) -> None:
        super().__init__(config.name, metrics=metrics)
        self.config = config
        self._client = pool.client(config.ca_bundle)
        self._what = f"{self.type} sink {self.name}"

    def _request(self, method: str, url: str, **kwargs: Any) -> Coroutine[Any, Any, httpx.Response]:
        return request(
            self._client,
            method,
            url,
            what=self._what,
            timeout_s=self.config.timeout_s,
            **kwargs,
        )

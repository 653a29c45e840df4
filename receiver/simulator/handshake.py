"""The validation handshake Graph performs before it creates a subscription.

Graph POSTs to the notification URL with `validationToken` added to its query string
(an existing query string is kept), `Content-Type: text/plain` and an empty body. The
endpoint must answer 200 within 10 s with the URL-decoded token as its body, exactly.
The token is opaque; like Graph's, it contains spaces and colons, so a receiver that
forgets to URL-decode it fails here rather than in production.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

TIMED_OUT = "Subscription validation request timed out."
NOT_200 = (
    "Subscription validation request failed. Notification endpoint must respond with "
    "200 OK to validation request."
)
MISMATCH = (
    "Subscription validation request failed. Response must exactly match "
    "validationToken query parameter."
)


@dataclass(frozen=True)
class HandshakeResult:
    url: str
    token: str
    status_code: int | None
    body: str | None
    error: str | None  # Graph's message when the endpoint failed validation
    duration_ms: float


def new_validation_token() -> str:
    return (
        "Validation: Testing client application reachability for subscription "
        f"Request-Id: {uuid.uuid4()}"
    )


def with_query(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    extra = urlencode({name: value}, quote_via=quote)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def validate_endpoint(
    client: httpx.AsyncClient, url: str, timeout_s: float
) -> HandshakeResult:
    token = new_validation_token()
    target = with_query(url, "validationToken", token)
    started = time.perf_counter()
    status: int | None = None
    body: str | None = None
    error: str | None = None
    try:
        response = await asyncio.wait_for(
            client.post(
                target,
                content=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=timeout_s,
            ),
            timeout=timeout_s,
        )
        status, body = response.status_code, response.text
        if status != 200:
            error = NOT_200
        elif body != token:
            error = MISMATCH
    except (TimeoutError, httpx.TimeoutException):
        error = TIMED_OUT
    except httpx.HTTPError:
        error = NOT_200
    duration = (time.perf_counter() - started) * 1000
    return HandshakeResult(target, token, status, body, error, round(duration, 1))

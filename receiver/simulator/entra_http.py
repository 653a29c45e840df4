"""What every Entra ID answer shares: its JSON headers, and its errors in Entra's shape with
AADSTS codes and texts (``error_description``: the code and text, a trace id, the caller's
correlation id and a timestamp)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.error = error
        self.code = code
        self.text = text


def entra_json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
            "x-ms-request-id": str(uuid.uuid4()),
        },
    )


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def correlation_id(request: Request) -> str:
    return request.headers.get("client-request-id") or str(uuid.uuid4())


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def describe(code: int, text: str, *, trace_id: str, correlation: str, stamp: str) -> str:
    """Entra's ``error_description``: AADSTS code and text, then trace, correlation, time."""
    return (
        f"AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\n"
        f"Correlation ID: {correlation}\r\nTimestamp: {stamp}"
    )


def error_response(request: Request, exc: EntraError) -> Response:
    trace_id = str(uuid.uuid4())
    correlation = correlation_id(request)
    stamp = timestamp()
    return entra_json(
        {
            "error": exc.error,
            "error_description": describe(
                exc.code, exc.text, trace_id=trace_id, correlation=correlation, stamp=stamp
            ),
            "error_codes": [exc.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation,
            "error_uri": f"{base_url(request)}/error?code={exc.code}",
        },
        status=exc.status,
    )


def unknown_tenant(tenant: str) -> EntraError:
    return EntraError(
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud. Check with your "
        "subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant.",
    )


def unknown_app(client_id: str, tenant_name: str) -> str:
    """AADSTS700016's text: no app `client_id` in the tenant."""
    return (
        f"Application with identifier '{client_id}' was not found in the "
        f"directory '{tenant_name}'. This can happen if the application "
        "has not been installed by the administrator of the tenant or consented "
        "to by any user in the tenant. You may have sent your authentication "
        "request to the wrong tenant."
    )


def missing_parameter(name: str) -> str:
    """AADSTS900144's text: a required parameter is missing."""
    return f"The request body must contain the following parameter: '{name}'."

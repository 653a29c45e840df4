"""What every Graph request shares: faults, bearer token, roles, throttling, headers, errors.

`graph_endpoint(handler, ...)` wraps a handler `(request, ctx) -> Response` with that
pipeline, in Graph's order: injected faults and latency first (they stand for the service
in front), then the token (401), the app roles (403), the per-app rate limit (429).
Handlers raise `GraphError` for Graph's error body.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.tokens import Caller, TokenError

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Tenant

ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)


class GraphError(Exception):
    """Raise in a handler to answer with Graph's error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class GraphContext:
    sim: Simulator
    caller: Caller
    tenant: Tenant
    request_id: str
    client_request_id: str


Handler = Callable[[Request, GraphContext], Awaitable[Response]]


def graph_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type=ODATA_JSON,
    )


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    client_request_id: str,
    headers: dict[str, str] | None = None,
    inner: dict[str, Any] | None = None,
) -> Response:
    inner_error: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    inner_error.update(inner or {})
    body = {"error": {"code": code, "message": message, "innerError": inner_error}}
    return graph_json(body, status=status, headers=headers)


def throttled_response(retry_after: float, request_id: str, client_request_id: str) -> Response:
    """Graph's documented 429: Retry-After (seconds, may be fractional) and TooManyRequests."""
    value = f"{retry_after:g}"
    return error_response(
        429,
        "TooManyRequests",
        "Please retry again later.",
        request_id,
        client_request_id,
        headers={"Retry-After": value},
        inner={"code": "429", "message": "Please retry after", "status": "429"},
    )


def missing_roles_message(required: Sequence[str], granted: frozenset[str]) -> str:
    return (
        f"Missing application roles. API required roles: {','.join(required)}, "
        f"application roles: {','.join(sorted(granted))}."
    )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("Access token is empty.")
    return token.strip()


Answer = Callable[["Request", "Simulator", str, str], Awaitable[Response]]


async def answered(request: Request, counter: str, answer: Answer) -> Response:
    """What every Graph answer shares: counted, with its request ids and OData version.
    ``answer(request, sim, request_id, client_request_id)`` makes the response."""
    sim: Simulator = request.app.state.sim
    request_id = str(uuid.uuid4())
    client_request_id = request.headers.get("client-request-id") or request_id
    sim.counters[counter] += 1
    response = await answer(request, sim, request_id, client_request_id)
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    response.headers["OData-Version"] = "4.0"
    return response


def authenticate(
    request: Request, sim: Simulator, request_id: str, client_request_id: str
) -> tuple[Caller, Tenant] | Response:
    """The caller and tenant of the request's bearer token, or Graph's 401."""
    try:
        caller = sim.tokens.verify(bearer_token(request))
    except TokenError as exc:
        sim.counters["graph.401"] += 1
        return error_response(
            401,
            "InvalidAuthenticationToken",
            exc.message,
            request_id,
            client_request_id,
            headers={"WWW-Authenticate": 'Bearer realm=""'},
        )
    tenant = sim.directory.find(caller.tenant_id)
    if tenant is None:
        return error_response(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid tenant.",
            request_id,
            client_request_id,
        )
    return caller, tenant


def graph_endpoint(
    handler: Handler, *, roles: Sequence[str] | None, bucket: str | None, family: str
) -> Callable[[Request], Awaitable[Response]]:
    """An ASGI endpoint running Graph's request pipeline around `handler`.

    `roles`: any one of them is enough (None: any valid token); `bucket`: throttle bucket.
    """

    async def endpoint(request: Request) -> Response:
        return await answered(request, f"graph.{family}", _run)

    async def _run(
        request: Request, sim: Simulator, request_id: str, client_request_id: str
    ) -> Response:
        faults = sim.faults
        if faults.graph_latency_ms > 0:
            await asyncio.sleep(faults.graph_latency_ms / 1000)
        if faults.take("graph_5xx"):
            sim.counters["fault.graph_5xx"] += 1
            status = faults.graph_5xx_status
            code = "serviceNotAvailable" if status == 503 else "generalException"
            return error_response(
                status,
                code,
                "The service is temporarily unavailable.",
                request_id,
                client_request_id,
            )
        if faults.take("graph_429"):
            sim.counters["fault.graph_429"] += 1
            return throttled_response(faults.graph_429_retry_after, request_id, client_request_id)
        signed_in = authenticate(request, sim, request_id, client_request_id)
        if isinstance(signed_in, Response):
            return signed_in
        caller, tenant = signed_in
        if roles is not None and not caller.roles.intersection(roles):
            sim.counters["graph.403"] += 1
            return error_response(
                403,
                "Forbidden",
                missing_roles_message(roles, caller.roles),
                request_id,
                client_request_id,
            )
        retry_after = sim.throttle.check(bucket, tenant.tenant_id, caller.app_id)
        if retry_after is not None:
            sim.counters["graph.429"] += 1
            return throttled_response(retry_after, request_id, client_request_id)
        ctx = GraphContext(sim, caller, tenant, request_id, client_request_id)
        try:
            return await handler(request, ctx)
        except GraphError as exc:
            return error_response(
                exc.status,
                exc.code,
                exc.message,
                request_id,
                client_request_id,
                headers=exc.headers,
            )

    return endpoint


def preferences(request: Request) -> frozenset[str]:
    """The preferences of every `Prefer` header, lower-cased (RFC 7240: comma-separated,
    a token with an optional `=value`; `return=representation, include-unknown-enum-members`).
    """
    found: set[str] = set()
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            preference = part.split(";")[0].strip().lower().replace(" ", "")
            if preference:
                found.add(preference)
    return frozenset(found)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphError(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure "
            "Content-Type header is set and payload is of valid JSON format.",
        ) from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
    return body


def metadata_context(request: Request, suffix: str) -> str:
    """An `@odata.context`: the request's service root (its version), `$metadata#`, `suffix`."""
    version = request.url.path.split("/")[1]
    return f"{request.url.scheme}://{request.url.netloc}/{version}/$metadata#{suffix}"


def not_found(kind: str, item_id: str) -> GraphError:
    return GraphError(404, "NotFound", f"{kind} with id '{item_id}' was not found.")


def stored(items: Mapping[str, dict[str, Any]], kind: str, item_id: str) -> dict[str, Any]:
    """The stored item `item_id`, or Graph's 404 for a `kind` with that id."""
    item = items.get(item_id)
    if item is None:
        raise not_found(kind, item_id)
    return item


def _int_option(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise GraphError(
            400, "BadRequest", f"Invalid value '{raw}' for query option '{name}'."
        ) from exc
    if value < 0:
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for query option '{name}'.")
    return value


def page(
    request: Request,
    items: Sequence[dict[str, Any]],
    *,
    page_size: int,
    max_top: int | None,
    context: str,
) -> dict[str, Any]:
    """One page of `items` per `$top`/`$skip`, with `@odata.nextLink` when more remain."""
    top = _int_option(request, "$top")
    if top is not None and max_top is not None and top > max_top:
        raise GraphError(
            400,
            "BadRequest",
            f"The limit of '{max_top}' for Top query has been "
            f"exceeded. The value from the incoming request is '{top}'.",
        )
    skip = _int_option(request, "$skip") or 0
    size = top if top is not None and top > 0 else page_size
    chunk = list(items[skip : skip + size])
    body: dict[str, Any] = {"@odata.context": metadata_context(request, context)}
    if request.query_params.get("$count", "").lower() == "true":
        body["@odata.count"] = len(items)
    body["value"] = chunk
    if skip + size < len(items):
        params = {k: v for k, v in request.query_params.items() if k != "$skip"}
        params["$skip"] = str(skip + size)
        query = urlencode(params, safe="$',:/")
        url = request.url
        body["@odata.nextLink"] = f"{url.scheme}://{url.netloc}{url.path}?{query}"
    return body

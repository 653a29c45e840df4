"""`POST /{version}/$batch`: Graph's JSON batching.

What Graph documents (learn.microsoft.com/graph/json-batching, docs-contrib
concepts/json-batching.md, revision of 2025-02-21; and concepts/throttling.md, "Throttling and
batching"):

- The body is one JSON object whose required `requests` is a list of individual requests:
  `id` (required string, a correlation value, not case-sensitive, unique in the batch or the
  whole batch fails with 400), `method` (required), `url` (required, relative to the version
  root: `/users` or `users?$select=...`, query string allowed), `headers` (optional, but
  required with a `body`, and must then carry `Content-Type`), `body` (a JSON object, or a
  base64 value for binary content), `dependsOn` (the ids to run after).
- At most 20 requests; more is a 400 `MaximumValueExceeded`, "Number of batch request steps
  exceeds the maximum value of 20."
- A malformed batch is a 400 (Graph's error body); a batch that parses is a 200 whose
  `responses` carry one `{id, status, headers, body}` per request. The 200 says nothing about
  the items. Responses may come back in any order: clients correlate them by `id`.
- Each request is evaluated against the throttling limits on its own: a throttled one gets
  its own 429 with `Retry-After` in its headers; several in one batch can be throttled.
- A request that depends on one that failed gets 424 (Failed Dependency).

What the simulator does beyond that (its choices, where Graph documents nothing):

- Each item is an ASGI sub-request into this same app at `/{version}` + its url (the path
  percent-decoded, raw path and query string kept), with the batch's `Authorization` and
  `Host` and the item's own headers, so it goes through exactly the pipeline of a direct
  request (`graph_http.graph_endpoint`: injected faults and latency, 401, 403, the per-app
  per-tenant 429, the handler) and counts in its own family. An item's `Authorization`,
  `Host` or `Content-Length` header is ignored: the batch's apply.
- The batch itself checks the bearer token once (401 for the whole batch, as a direct request
  is answered), is counted in no throttle bucket and gets no injected fault or latency (its
  items do). It counts `graph.batch`, and `graph.batch_items` by its number of items.
- Items without `dependsOn` run concurrently, so N items under injected latency L take about
  L; an item with `dependsOn` starts when those items have answered.
- An item whose url is absolute (`https://...`) or is itself `$batch` answers 400 BadRequest;
  an item whose base64 body does not decode answers 400 BadRequest.
- Also a malformed batch (400): `dependsOn` naming an id not in the batch, or a cycle;
  `headers` not an object of strings.
- An empty `requests` list answers 200 with no responses (not verified against Graph).
- The fault `batch_refused` (count) answers the next batches 400 as a Graph without JSON
  batching would ("Resource not found for the segment '$batch'"), items unread.
- Responses come back in REVERSE request order, so a client matching them by position fails.
- Item response headers: everything the handler set except the connection's own
  (Content-Length, Date, Server, ...), names in Graph's casing (Content-Type, Retry-After,
  OData-Version, request-id, client-request-id, ...). Item bodies: JSON decoded when the
  Content-Type is JSON, otherwise base64 of the bytes; no `body` when the answer had none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

from receiver.simulator.graph_http import answered, authenticate, error_response, graph_json

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator

MAX_REQUESTS = 20
BATCH_SEGMENT = "$batch"
# Headers of the connection, not of the item's answer: not copied into an item's headers.
_CONNECTION_HEADERS = frozenset(
    {"content-length", "connection", "date", "keep-alive", "server", "transfer-encoding"}
)
# Item request headers the batch's own replace.
_BATCH_OWNED = frozenset({"authorization", "host", "content-length"})
_CANONICAL = {
    name.lower(): name
    for name in (
        "Cache-Control",
        "Content-Type",
        "ETag",
        "Location",
        "OData-Version",
        "Preference-Applied",
        "Retry-After",
        "WWW-Authenticate",
    )
}
_ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:)?//", re.IGNORECASE)
_METHOD = re.compile(r"^[A-Za-z]+$")
# Characters kept as they are when an item's path becomes the sub-request's raw path.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class BatchError(Exception):
    """The batch itself is malformed: 400 for the whole batch."""

    def __init__(self, message: str, code: str = "BadRequest") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Step:
    """One parsed request of a batch (`key`: its id as compared, case-folded)."""

    id: str
    key: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    has_body: bool
    depends_on: tuple[str, ...]


@dataclass
class ItemResponse:
    """One item's answer: its status, its headers (Graph's casing) and its body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False

    def as_json(self, step_id: str) -> dict[str, Any]:
        item: dict[str, Any] = {"id": step_id, "status": self.status, "headers": self.headers}
        if self.has_body:
            item["body"] = self.body
        return item


# Parsing


def _string(raw: Mapping[str, Any], name: str, index: int) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BatchError(
            f"Request at index {index} of the batch is missing the required property "
            f"'{name}' (a non-empty string)."
        )
    return value


def _headers(raw: Mapping[str, Any], step_id: str) -> dict[str, str]:
    headers = raw.get("headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BatchError(f"The headers of request id '{step_id}' must be an object of strings.")
    return dict(headers)


def _depends_on(raw: Mapping[str, Any], step_id: str) -> tuple[str, ...]:
    value = raw.get("dependsOn")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BatchError(f"dependsOn of request id '{step_id}' must be a list of request ids.")
    return tuple(v.lower() for v in value)


def _step(raw: Any, index: int) -> Step:
    if not isinstance(raw, dict):
        raise BatchError(f"Request at index {index} of the batch must be a JSON object.")
    step_id = _string(raw, "id", index)
    method = _string(raw, "method", index).strip()
    if not _METHOD.match(method):
        raise BatchError(f"Invalid method '{method}' in request id '{step_id}'.")
    url = _string(raw, "url", index)
    headers = _headers(raw, step_id)
    has_body = raw.get("body") is not None
    if has_body and not any(name.lower() == "content-type" for name in headers):
        raise BatchError(
            f"Write request id : {step_id} does not contain Content-Type header or body."
        )
    return Step(
        id=step_id,
        key=step_id.lower(),
        method=method.upper(),
        url=url,
        headers=headers,
        body=raw.get("body"),
        has_body=has_body,
        depends_on=_depends_on(raw, step_id),
    )


def _check_dependencies(steps: Sequence[Step]) -> None:
    by_key = {step.key: step for step in steps}
    for step in steps:
        for key in step.depends_on:
            if key not in by_key:
                raise BatchError(
                    f"Request id '{step.id}' depends on '{key}', which is not in the batch."
                )
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(key: str) -> None:
        state[key] = 1
        for dep in by_key[key].depends_on:
            if state.get(dep) == 1:
                raise BatchError(f"The dependsOn of request id '{by_key[key].id}' form a cycle.")
            if dep not in state:
                visit(dep)
        state[key] = 2

    for step in steps:
        if step.key not in state:
            visit(step.key)


def parse_batch(raw: bytes) -> list[Step]:
    """The requests of a batch body, in request order; `BatchError` when it is malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchError("Invalid batch payload format.") from exc
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise BatchError("Invalid batch payload format: 'requests' must be a list of requests.")
    requests: list[Any] = body["requests"]
    if len(requests) > MAX_REQUESTS:
        raise BatchError(
            f"Number of batch request steps exceeds the maximum value of {MAX_REQUESTS}.",
            code="MaximumValueExceeded",
        )
    steps = [_step(item, index) for index, item in enumerate(requests)]
    seen: set[str] = set()
    for step in steps:
        if step.key in seen:
            raise BatchError(f"Batch request contains a duplicate request id '{step.id}'.")
        seen.add(step.key)
    _check_dependencies(steps)
    return steps


# Item answers


def _canonical(name: str) -> str:
    return _CANONICAL.get(name.lower(), name.lower())


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def captured(status: int, raw_headers: Sequence[tuple[bytes, bytes]], body: bytes) -> ItemResponse:
    """An item's answer from what the sub-request sent (or a Response's parts)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        if name.lower() in _CONNECTION_HEADERS:
            continue
        key = _canonical(name)
        value = raw_value.decode("latin-1")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if not body:
        return ItemResponse(status, headers)
    if _is_json(headers.get("Content-Type")):
        try:
            return ItemResponse(status, headers, json.loads(body), has_body=True)
        except (ValueError, UnicodeDecodeError):
            pass
    return ItemResponse(status, headers, base64.b64encode(body).decode("ascii"), has_body=True)


def _error_item(status: int, code: str, message: str, step: Step) -> ItemResponse:
    """An item answered here (not by a handler), with Graph's error body and ids."""
    request_id = str(uuid.uuid4())
    client_request_id = _header(step.headers, "client-request-id") or request_id
    response = error_response(status, code, message, request_id, client_request_id)
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    return captured(response.status_code, response.raw_headers, bytes(response.body))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


# Running the items


class ItemRefused(Exception):
    """An item that never reaches a handler: answered 400 by the batch."""


def _target(step: Step) -> tuple[str, str]:
    """The item's (path relative to the version root, query string); `ItemRefused` if its url
    is absolute or is `$batch` itself."""
    url = step.url.strip()
    if _ABSOLUTE.match(url):
        raise ItemRefused(f"The url of request id '{step.id}' must be relative: {url}")
    url = url.split("#", 1)[0]
    path, _, query = url.partition("?")
    path = path.lstrip("/")
    if unquote(path).strip("/").lower() == BATCH_SEGMENT:
        raise ItemRefused(f"Request id '{step.id}' cannot be a batch request.")
    return path, query


def _request_body(step: Step) -> bytes:
    if not step.has_body:
        return b""
    content_type = _header(step.headers, "content-type")
    if isinstance(step.body, str) and not _is_json(content_type):
        text = step.body.strip().replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ItemRefused(f"The body of request id '{step.id}' is not valid base64.") from exc
    return json.dumps(step.body, separators=(",", ":")).encode()


def _sub_scope(scope: Scope, step: Step, path: str, query: str, body: bytes) -> Scope:
    batch_path: str = scope["path"]
    root = batch_path[: batch_path.rfind("/") + 1]  # "/v1.0/" (after any root path)
    decoded = root + unquote(path)
    raw_path = (quote(root, safe=_PATH_SAFE) + quote(path, safe=_PATH_SAFE)).encode("ascii")
    headers: list[tuple[bytes, bytes]] = [
        (name, value) for name, value in scope["headers"] if name in (b"authorization", b"host")
    ]
    for name, value in step.headers.items():
        if name.lower() not in _BATCH_OWNED:
            headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    if step.has_body:
        headers.append((b"content-length", str(len(body)).encode("ascii")))
    sub: dict[str, Any] = {
        "type": "http",
        "asgi": scope.get("asgi", {"version": "3.0"}),
        "http_version": scope.get("http_version", "1.1"),
        "method": step.method,
        "scheme": scope.get("scheme", "https"),
        "path": decoded,
        "raw_path": raw_path,
        "query_string": query.encode("utf-8"),
        "root_path": scope.get("app_root_path", ""),
        "headers": headers,
        "client": scope.get("client"),
        "server": scope.get("server"),
        "extensions": {},
    }
    if "state" in scope:
        sub["state"] = dict(scope["state"])
    return sub


async def _dispatch(app: ASGIApp, scope: Scope, step: Step) -> ItemResponse:
    """Run one item through the app, as a request of its own."""
    try:
        path, query = _target(step)
        body = _request_body(step)
    except ItemRefused as exc:
        return _error_item(400, "BadRequest", str(exc), step)
    sub = _sub_scope(scope, step, path, query, body)
    delivered = False
    start: Message | None = None
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a sub-request is never disconnected; cancelled at its end
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    try:
        await app(sub, receive, send)
    except Exception:  # the app answered 500 before raising, or never answered
        if start is None:
            return _error_item(500, "generalException", "An internal error occurred.", step)
    if start is None:
        return _error_item(500, "generalException", "The request got no answer.", step)
    return captured(int(start["status"]), list(start.get("headers", [])), b"".join(chunks))


async def run_steps(app: ASGIApp, scope: Scope, steps: Sequence[Step]) -> dict[str, ItemResponse]:
    """Every item's answer by key: each starts once its dependencies have answered, the rest
    at once, all concurrently; an item whose dependency failed (>= 400) gets 424."""
    tasks: dict[str, asyncio.Task[ItemResponse]] = {}

    async def run(step: Step) -> ItemResponse:
        for key in step.depends_on:
            dependency = await tasks[key]
            if dependency.status >= 400:
                return _error_item(
                    424,
                    "FailedDependency",
                    f"Request id '{step.id}' depends on request id '{key}', which failed "
                    f"with status {dependency.status}.",
                    step,
                )
        return await _dispatch(app, scope, step)

    for step in steps:
        tasks[step.key] = asyncio.create_task(run(step))
    await asyncio.gather(*tasks.values())
    return {key: task.result() for key, task in tasks.items()}


# The endpoint


async def batch(request: Request) -> Response:
    """`POST /{version}/$batch`: check the token once, run the items, answer them all."""
    return await answered(request, "graph.batch", _answer)


async def _answer(
    request: Request, sim: Simulator, request_id: str, client_request_id: str
) -> Response:
    signed_in = authenticate(request, sim, request_id, client_request_id)
    if isinstance(signed_in, Response):
        return signed_in
    if sim.faults.take("batch_refused"):  # a Graph (proxy, cloud) without JSON batching
        sim.counters["fault.batch_refused"] += 1
        return error_response(
            400,
            "BadRequest",
            f"Resource not found for the segment '{BATCH_SEGMENT}'.",
            request_id,
            client_request_id,
        )
    try:
        steps = parse_batch(await request.body())
    except BatchError as exc:
        return error_response(400, exc.code, exc.message, request_id, client_request_id)
    sim.counters["graph.batch_items"] += len(steps)
    answers = await run_steps(request.app, request.scope, steps)
    responses = [answers[step.key].as_json(step.id) for step in reversed(steps)]
    return graph_json({"responses": responses})


routes = [Route(f"/{BATCH_SEGMENT}", batch, methods=["POST"])]

"""Loopback vendor servers for the sink tests: real HTTP (uvicorn, the test's event loop) that
record every request and answer from a script, so any test can make them fail on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.envelope import Entity, Envelope
from receiver.pipeline.tickets import RedisTicketStore
from receiver.simulator.tls import TlsFiles, ensure_tls
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.store.keys import Keys
from tests.fixtures.web import free_port, served

FORMATS = Path(__file__).resolve().parent.parent / "formats"
TENANT_ID = "11111111-1111-4111-8111-111111111111"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: str | bytes = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def json_answer(data: Any, status: int = 200, **kw: Any) -> Answer:
    return Answer(status, json.dumps(data), {"content-type": "application/json"}, **kw)


Handler = Callable[[Recorded], Awaitable[Answer | None]]


class Server:
    """Records requests; answers from a queue of scripted answers, then the handler, then the
    default answer."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Answer] = []
        self.default = Answer(200, "")
        self.handler: Handler | None = None
        self.url = ""
        self.app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PATCH", "PUT"])]
        )

    def fail(self, *answers: Answer) -> None:
        self.script.extend(answers)

    async def _endpoint(self, request: Request) -> Response:
        rec = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        self.requests.append(rec)
        answer: Answer | None = self.script.pop(0) if self.script else None
        if answer is None and self.handler is not None:
            answer = await self.handler(rec)
        answer = answer or self.default
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return Response(answer.body, status_code=answer.status, headers=answer.headers)


@pytest.fixture
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    async with served(srv.app) as url:
        srv.url = url
        yield srv


@contextlib.asynccontextmanager
async def served_tls(app: Any, tls: TlsFiles) -> AsyncIterator[str]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=1,
        ssl_certfile=str(tls.cert_path),
        ssl_keyfile=str(tls.key_path),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def pool() -> AsyncIterator[ClientPool]:
    p = ClientPool()
    yield p
    await p.aclose()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisTicketStore]:
    client = Redis.from_url(redis_url)
    yield RedisTicketStore(client, Keys("{test}"))
    await client.aclose()


@pytest.fixture
def metrics() -> SinkMetrics:
    return SinkMetrics()


def make_envelope(alert_id: str = "da637551227677560813_-961444813", **changes: Any) -> Envelope:
    base = Envelope(
        id=alert_id,
        tenant_id=TENANT_ID,
        source_api="alerts_v2",
        tenant="contoso",
        title="Suspicious PowerShell <download> & run",
        severity="high",
        status="new",
        description="A process ran an encoded PowerShell command that downloaded a file.",
        category="Execution",
        provider="microsoftDefenderForEndpoint",
        product="Microsoft Defender for Endpoint",
        created_at="2026-03-01T10:00:00Z",
        updated_at="2026-03-01T10:05:00Z",
        first_activity_at="2026-03-01T09:58:00Z",
        web_url=f"https://security.microsoft.com/alerts/{alert_id}?tid={TENANT_ID}",
        entities=(
            Entity("user", "adele@contoso.com"),
            Entity("device", "pc-042.contoso.com"),
            Entity("ip", "203.0.113.7"),
        ),
        tags=("Ransomware",),
        raw={"id": alert_id, "severity": "high"},
    )
    if changes:
        from dataclasses import replace

        base = replace(base, **changes)
    return base


def update_of(envelope: Envelope, **fields: Any) -> Envelope:
    from dataclasses import replace

    changed = tuple(
        k
        for k in ("status", "severity", "assigned_to", "classification", "determination")
        if k in fields
    )
    updated = replace(envelope, updated_at="2026-03-01T11:00:00Z", **fields)
    return updated.as_update(changed)


@pytest.fixture
def envelope() -> Envelope:
    return make_envelope()

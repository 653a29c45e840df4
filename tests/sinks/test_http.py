"""The retry decision, table-tested through every HTTP sink against a loopback server."""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import pytest

from receiver.envelope import Envelope
from receiver.pipeline.tickets import RedisTicketStore
from receiver.simulator.tls import TlsFiles
from receiver.sinks.base import Delivery, PermanentError, RetryableError, SinkError
from receiver.sinks.http import ClientPool, parse_retry_after, safe_url
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from tests.fixtures.web import free_port
from tests.sinks.conftest import Answer, Server, served_tls
from tests.sinks.helpers import http_config

HTTP_SINKS = ("teams", "slack", "webhook", "pagerduty", "jira", "servicenow")
OK, RETRY, PERM = "ok", "retryable", "permanent"


def http_date_in(seconds: float) -> str:
    """An HTTP date ``seconds`` from now, made when the case runs (not at import)."""
    return email.utils.format_datetime(
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds), usegmt=True
    )


def cases() -> list[tuple[str, Answer, str, float | None]]:
    return [
        ("400", Answer(400, "bad request"), PERM, None),
        ("401", Answer(401, "unauthorized"), PERM, None),
        ("403", Answer(403), PERM, None),
        ("404", Answer(404, "no such hook"), PERM, None),
        ("408", Answer(408), RETRY, None),
        ("409", Answer(409), RETRY, None),
        ("429", Answer(429, "slow down"), RETRY, None),
        ("429-seconds", Answer(429, "", {"retry-after": "7"}), RETRY, 7.0),
        ("429-date", Answer(429, "", {"retry-after": http_date_in(900)}), RETRY, 900.0),
        ("500", Answer(500, "oops"), RETRY, None),
        ("501", Answer(501), PERM, None),
        ("502", Answer(502), RETRY, None),
        ("503-retry-after", Answer(503, "", {"retry-after": "3"}), RETRY, 3.0),
        ("301", Answer(301, "", {"location": "http://elsewhere.invalid/"}), PERM, None),
        ("timeout", Answer(200, "", delay_s=1.0), RETRY, None),
    ]


def _sink(
    kind: str, url: str, pool: ClientPool, store: RedisTicketStore | None = None, **extra: Any
) -> Any:
    return build_sink(
        http_config(kind, url, **extra), pool=pool, metrics=SinkMetrics(), tickets=store
    )


async def _outcome(sink: Any, envelope: Envelope) -> tuple[str, SinkError | None]:
    try:
        await sink.send(envelope, Delivery(route="test"))
    except RetryableError as exc:
        return RETRY, exc
    except PermanentError as exc:
        return PERM, exc
    return OK, None


@pytest.mark.parametrize("kind", HTTP_SINKS)
async def test_classification_table(
    kind: str, server: Server, pool: ClientPool, envelope: Envelope, store: RedisTicketStore
) -> None:
    for name, answer, expected, retry_after in cases():
        server.script.clear()
        # Every request fails the same way (ticket sinks make a search call first).
        server.handler = None
        server.default = answer
        sink = _sink(kind, server.url, pool, store, timeout_s=0.3 if name == "timeout" else 2.0)
        got, exc = await _outcome(sink, envelope)
        assert got == expected, f"{kind} {name}: {got} ({exc})"
        if expected == RETRY and retry_after is not None:
            assert isinstance(exc, RetryableError)
            assert exc.retry_after == pytest.approx(retry_after, abs=60.0), name
        if exc is not None and name not in ("timeout",):
            assert exc.status == answer.status, name


@pytest.mark.parametrize("kind", ("teams", "slack", "webhook", "pagerduty"))
async def test_success(kind: str, server: Server, pool: ClientPool, envelope: Envelope) -> None:
    server.default = Answer(202 if kind == "pagerduty" else 200, "1" if kind == "teams" else "")
    got, exc = await _outcome(_sink(kind, server.url, pool), envelope)
    assert got == OK, exc
    assert len(server.requests) == 1


@pytest.mark.parametrize("kind", HTTP_SINKS)
async def test_connection_refused_is_retryable(
    kind: str, pool: ClientPool, envelope: Envelope, store: RedisTicketStore
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    got, exc = await _outcome(_sink(kind, url, pool, store), envelope)
    assert got == RETRY, exc


@pytest.mark.parametrize("kind", HTTP_SINKS)
async def test_tls_verification_failure_is_permanent(
    kind: str, tls_files: TlsFiles, pool: ClientPool, envelope: Envelope, store: RedisTicketStore
) -> None:
    srv = Server()
    async with served_tls(srv.app, tls_files) as url:
        got, exc = await _outcome(_sink(kind, url, pool, store), envelope)
        assert got == PERM and "certificate verification failed" in str(exc)
        # With the CA bundle configured the same server is trusted.
        srv.default = Answer(
            202 if kind != "jira" else 200,
            '{"result": [], "issues": []}' if kind in ("jira", "servicenow") else "",
        )
        trusted = _sink(kind, url, pool, store, ca_bundle=str(tls_files.ca_path))
        got, exc = await _outcome(trusted, envelope)
        assert got != PERM or "certificate" not in str(exc), exc
        assert srv.requests, "the trusted client reached the server"
        await pool.aclose()


async def test_teams_throttling_in_a_200_body(
    server: Server, pool: ClientPool, envelope: Envelope
) -> None:
    sink = _sink("teams", server.url, pool)
    for body in (
        "Webhook message delivery failed with error: Microsoft Teams endpoint "
        "returned HTTP error 429 with ContextId tcid=0,server=msgapi-canary-eus2-0",
        '{"error": {"code": "429", "message": "Too many requests"}}',
    ):
        server.default = Answer(200, body)
        got, exc = await _outcome(sink, envelope)
        assert got == RETRY, body
        assert exc is not None and exc.status == 429
    server.default = Answer(200, "Microsoft Teams endpoint returned HTTP error 400")
    assert (await _outcome(sink, envelope))[0] == PERM
    server.default = Answer(200, "1")
    assert (await _outcome(sink, envelope))[0] == OK


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("1.5", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999999") == 24 * 3600.0


def test_safe_url_drops_path_and_query() -> None:
    url = "https://prod-12.westeurope.logic.azure.com:443/workflows/x/triggers?sig=SECRET"
    assert safe_url(url) == "https://prod-12.westeurope.logic.azure.com/…"
    assert safe_url("http://127.0.0.1:8080/hook?k=SECRET") == "http://127.0.0.1:8080/…"

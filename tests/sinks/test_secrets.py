"""No sink leaks a secret (webhook URL token, API key, password, routing key, signing secret)
into a log line, an exception's text or a metric: through success and failure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from receiver.config.loader import settings_from_mapping
from receiver.pipeline.tickets import RedisTicketStore
from receiver.sinks.base import Delivery, SinkError
from receiver.sinks.registry import build_sinks
from tests.fixtures.settings import base_settings_data
from tests.fixtures.web import free_port
from tests.sinks.conftest import Answer, Server, make_envelope, update_of
from tests.sinks.helpers import (
    JIRA_TOKEN,
    PD_KEY,
    SECRETS,
    SIGNING_SECRET,
    SLACK_TOKEN,
    SMTP_PASSWORD,
    SNOW_PASSWORD,
    TEAMS_TOKEN,
    WEBHOOK_TOKEN,
)
from tests.sinks.vendors import FakeJira, FakeServiceNow


def _sinks(url: str, tmp_path: Path) -> list[dict[str, Any]]:
    (tmp_path / "jira-token").write_text(JIRA_TOKEN + "\n")
    return [
        {"type": "teams", "name": "teams", "url_env": "TEAMS_URL", "timeout_s": 0.3},
        {
            "type": "slack",
            "name": "slack",
            "url": f"{url}/services/{SLACK_TOKEN}",
            "timeout_s": 0.3,
        },
        {
            "type": "webhook",
            "name": "webhook",
            "url": f"{url}/hooks/{WEBHOOK_TOKEN}",
            "signing_secret_env": "SIGNING",
            "timeout_s": 0.3,
            "headers": {"Authorization": "Bearer hdr-secret-bearer-token"},
        },
        {
            "type": "pagerduty",
            "name": "pagerduty",
            "url": f"{url}/v2/enqueue",
            "routing_key": PD_KEY,
            "timeout_s": 0.3,
        },
        {
            "type": "jira",
            "name": "jira",
            "url": url,
            "email": "bot@contoso.com",
            "api_token_file": str(tmp_path / "jira-token"),
            "project": "SEC",
            "timeout_s": 0.3,
        },
        {
            "type": "servicenow",
            "name": "servicenow",
            "url": url,
            "username": "svc-graph",
            "password": SNOW_PASSWORD,
            "timeout_s": 0.3,
        },
        {
            "type": "email",
            "name": "email",
            "host": "127.0.0.1",
            "port": free_port(),
            "tls": "none",
            "username": "alerts",
            "password": SMTP_PASSWORD,
            "sender": "alerts@contoso.com",
            "to": ["soc@contoso.com"],
            "timeout_s": 0.3,
        },
    ]


async def test_no_secret_in_logs_errors_or_metrics(
    server: Server, store: RedisTicketStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A role started earlier in this process quiets httpx (receiver.logs): hear it here.
    caplog.set_level(logging.DEBUG, logger="httpx")
    data = base_settings_data()
    data["sinks"] = _sinks(server.url, tmp_path)
    environ = {
        "TEAMS_URL": f"{server.url}/workflows/x/invoke?{TEAMS_TOKEN}",
        "SIGNING": SIGNING_SECRET,
    }
    settings = settings_from_mapping(data, environ=environ)
    sinks = build_sinks(settings.sinks, tickets=store)
    secrets = (*SECRETS, "hdr-secret-bearer-token")
    texts: list[str] = []
    outcomes: dict[str, list[str]] = {}
    env = make_envelope()
    try:
        # 1. success (email has no server: a connection failure instead)
        jira = FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
        snow = FakeServiceNow(server, "svc-graph", SNOW_PASSWORD)

        async def vendor(rec: Any) -> Answer | None:
            if rec.path.startswith("/rest/"):
                return await jira.handle(rec)
            if rec.path.startswith("/api/now/"):
                return await snow.handle(rec)
            return Answer(202, "")

        server.handler = vendor
        for phase, answer in (
            ("ok", None),
            # 2. failures whose bodies echo what they were sent
            ("echo-400", "echo"),
            ("429", Answer(429, "", {"retry-after": "1"})),
            ("timeout", Answer(200, "", delay_s=0.6)),
        ):
            if answer == "echo":

                async def echo(rec: Any) -> Answer:
                    return Answer(
                        400,
                        f"bad request {rec.path}?{rec.query} "
                        f"{rec.headers.get('authorization', '')} "
                        f"{rec.body.decode(errors='replace')}",
                    )

                server.handler = echo
            elif isinstance(answer, Answer):
                server.handler = None
                server.default = answer
            for name in sinks.names():
                envelope = update_of(env, status="resolved") if phase != "ok" else env
                try:
                    result = await sinks[name].send(envelope, Delivery(route="r"))
                    texts.append(result.detail)
                    outcomes.setdefault(name, []).append("ok")
                except SinkError as exc:
                    texts.extend([str(exc), repr(exc)])
                    outcomes.setdefault(name, []).append(type(exc).__name__)
    finally:
        await sinks.aclose()
    # every sink was exercised through success and failure
    for name in sinks.names():
        if name != "email":
            assert outcomes[name][0] == "ok", (name, outcomes[name])
        assert "PermanentError" in outcomes[name] or "RetryableError" in outcomes[name]
    assert "RetryableError" in outcomes["teams"] and "PermanentError" in outcomes["teams"]
    # the servers really saw the secrets (so the assertions below mean something)
    seen = " ".join(f"{r.path}?{r.query} {r.headers} {r.body!r}" for r in server.requests)
    assert WEBHOOK_TOKEN in seen and PD_KEY in seen
    # The stand-in vendors' own logs (uvicorn, aiosmtpd) are theirs, not ours.
    ours = [r for r in caplog.records if not r.name.startswith(("uvicorn", "mail.log"))]
    lines = [r.getMessage() for r in ours]
    lines += [str(getattr(r, "exc_text", "") or "") for r in ours]
    assert any(r.name == "httpx" for r in caplog.records), "httpx request lines are checked"
    metrics = generate_latest(sinks.metrics.registry).decode()
    assert "receiver_sink_deliveries_total" in metrics
    import base64

    secrets += tuple(
        base64.b64encode(f"{u}:{p}".encode()).decode()
        for u, p in (("bot@contoso.com", JIRA_TOKEN), ("svc-graph", SNOW_PASSWORD))
    )
    for secret in secrets:
        for where, haystack in (
            ("log", "\n".join(lines)),
            ("error", "\n".join(texts)),
            ("metric", metrics),
        ):
            assert secret not in haystack, f"{secret[:6]}… leaked into a {where}"

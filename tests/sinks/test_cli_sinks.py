"""`receiver sinks test NAME --config FILE` against loopback servers."""

from __future__ import annotations

import asyncio

import pytest

from receiver.cli import main
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.sinks.conftest import Answer, Server
from tests.sinks.helpers import JIRA_TOKEN, WEBHOOK_TOKEN
from tests.sinks.vendors import FakeJira


async def test_sinks_test_reports_success_and_failure(
    server: Server, write_config: WriteConfig, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["sinks"] = [
        {
            "type": "webhook",
            "name": "siem",
            "url": f"{server.url}/hooks/{WEBHOOK_TOKEN}",
            "timeout_s": 2,
        },
        {
            "type": "jira",
            "name": "jira",
            "url": server.url,
            "email": "bot@contoso.com",
            "api_token": JIRA_TOKEN,
            "project": "SEC",
            "timeout_s": 2,
        },
    ]
    path = str(write_config(data))
    server.default = Answer(204)
    assert await asyncio.to_thread(main, ["sinks", "test", "siem", "--config", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sink siem: OK: posted msg_")
    assert server.requests[-1].json["title"].startswith("Sample alert")

    server.default = Answer(503, "", {"retry-after": "30"})
    assert await asyncio.to_thread(main, ["sinks", "test", "siem", "--config", path]) == 1
    err = capsys.readouterr().err
    assert "FAILED (retryable, status 503, retry after 30s" in err
    assert WEBHOOK_TOKEN not in err

    server.default = Answer(401, "no")
    assert await asyncio.to_thread(main, ["sinks", "test", "siem", "--config", path]) == 1
    assert "FAILED (permanent, status 401" in capsys.readouterr().err

    jira = FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    assert await asyncio.to_thread(main, ["sinks", "test", "jira", "--config", path]) == 0
    assert "created SEC-1 (ticket SEC-1)" in capsys.readouterr().out
    assert list(jira.issues) == ["SEC-1"]

    assert await asyncio.to_thread(main, ["sinks", "test", "nope", "--config", path]) == 1
    assert "no sink named 'nope' (configured: siem, jira)" in capsys.readouterr().err

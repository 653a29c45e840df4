"""Operator commands: route test, silence, dlq, alerts show (real Redis)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from receiver import clock
from receiver.cli import main
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.store.keys import Keys
from tests.fixtures.settings import TENANT_ID, WriteConfig, base_settings_data

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture
def config(write_config: WriteConfig, redis_url: str) -> Path:
    write_config(
        "route:\n  receiver: console\n  routes:\n"
        "    - matchers: ['severity=\"high\"']\n      receiver: pager\n",
        "routes.yaml",
    )
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["sinks"] = [{"type": "console", "name": "console"}, {"type": "console", "name": "pager"}]
    data["routes_file"] = "routes.yaml"
    return write_config(data)


def test_route_test_explains(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["route", "test", str(SAMPLES / "legacy_alert_ipc.json"), "--config", str(config)])
        == 0
    )
    out = capsys.readouterr().out
    assert 'route.routes[0] [severity="high"] matches' in out
    assert "-> pager (via route.routes[0])" in out


def test_route_test_shows_grouping(
    write_config: WriteConfig, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config(
        "route:\n  receiver: console\n  group_by: [severity, raw.nothing]\n"
        "  group_wait: 10s\n  repeat_interval: 1h\n",
        "routes.yaml",
    )
    assert (
        main(["route", "test", str(SAMPLES / "legacy_alert_ipc.json"), "--config", str(config)])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "-> console (via route, grouped by severity='high', raw.nothing='': first message "
        "after 10s, changes every 300s, reminders every 3600s)"
    ) in out


def test_route_test_reads_the_docs_incident_example(
    write_config: WriteConfig, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first example of Microsoft's "List incidents" page, as published (a collection
    page, enums in PascalCase), is an active medium incident classified true positive."""
    write_config(
        "route:\n  receiver: console\n  routes:\n"
        "    - matchers: ['kind=\"incident\"', 'status=\"new\"', "
        "'severity=\"medium\"', 'classification=\"truePositive\"']\n"
        "      receiver: pager\n",
        "routes.yaml",
    )
    assert (
        main(
            [
                "route",
                "test",
                str(SAMPLES / "incidents_list_docs_example.json"),
                "--config",
                str(config),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("incident 2972395 (medium, new, ")
    assert "-> pager (via route.routes[0])" in out


def test_route_test_bad_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["route", "test", str(bad), "--config", str(config)]) == 1
    assert "one JSON object" in capsys.readouterr().err


def test_silence_add_list_expire_and_route_test_sees_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "silence",
                "add",
                'provider="IPC"',
                "--duration",
                "1h",
                "--comment",
                "tuning the IPC policy, ask Sam",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    silence_id = capsys.readouterr().out.split()[1]
    assert (
        main(["route", "test", str(SAMPLES / "legacy_alert_ipc.json"), "--config", str(config)])
        == 0
    )
    assert f"SILENCED by {silence_id}" in capsys.readouterr().out
    assert main(["silence", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert silence_id in listing and "active" in listing and "tuning the IPC" in listing
    assert main(["silence", "expire", silence_id, "--config", str(config)]) == 0
    assert main(["silence", "expire", silence_id, "--config", str(config)]) == 1
    assert main(["silence", "add", "nonsense", "--comment", "x", "--config", str(config)]) == 1


def test_dlq_list_show_replay_purge(
    config: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = Keys("{test}")
    env = Envelope(id="a-1", tenant_id=TENANT_ID, source_api="alerts_v2", title="Bad one")
    with redis.Redis.from_url(redis_url) as r:
        ids = [
            r.xadd(
                keys.dlq("pager"),
                {
                    "e": env.to_json(),
                    "first": "1",
                    "route": "route",
                    "error": "webhook answered HTTP 400",
                    "reason": "permanent error",
                    "attempts": "1",
                },
            ).decode()
            for _ in range(3)
        ]
        assert main(["dlq", "list", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert out.count("permanent error") == 3 and "a-1" in out
        assert main(["dlq", "show", ids[0], "--config", str(config)]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["envelope"]["title"] == "Bad one" and shown["sink"] == "pager"
        assert main(["dlq", "replay", "--id", ids[0], "--config", str(config)]) == 0
        assert r.xlen(keys.sink("pager")) == 1 and r.xlen(keys.dlq("pager")) == 2
        assert main(["dlq", "replay", "--all", "--sink", "pager", "--config", str(config)]) == 0
        assert r.xlen(keys.sink("pager")) == 3 and r.xlen(keys.dlq("pager")) == 0
        r.xadd(keys.dlq("console"), {"e": env.to_json(), "error": "x"})
        assert main(["dlq", "purge", "--yes", "--config", str(config)]) == 0
        assert r.xlen(keys.dlq("console")) == 0
    assert main(["dlq", "list", "--sink", "nope", "--config", str(config)]) == 1


def test_alerts_show_timeline(
    config: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def write() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        await records.record(
            client,
            Keys("{test}"),
            TENANT_ID,
            "a-9",
            records.event("routed", sink="pager", route="route"),
            records.event("delivered", sink="pager", attempt=1),
        )
        await client.aclose()

    asyncio.run(write())
    assert main(["alerts", "show", "a-9", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "routed" in out and "delivered" in out and "sink=pager" in out
    assert main(["alerts", "show", "nope", "--config", str(config)]) == 1
    capsys.readouterr()
    # The tenant by name or id in any case (Settings.find_tenant), as every command reads it.
    for name in ("CONTOSO", "{" + TENANT_ID + "}"):
        assert main(["alerts", "show", "a-9", "--tenant", name, "--config", str(config)]) == 0
        assert "alert a-9 (tenant contoso)" in capsys.readouterr().out
    assert main(["alerts", "show", "a-9", "--tenant", "fabrikam", "--config", str(config)]) == 2
    assert (
        "receiver alerts show: no tenant 'fabrikam' in the settings (configured: contoso)"
        in capsys.readouterr().err
    )


def test_status_summary(config: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(config)]) == 1  # nothing runs yet
    out = capsys.readouterr().out
    assert "none: no worker is running" in out and "FREE (no scheduler)" in out
    assert "ATTENTION NEEDED" in out

    async def healthy() -> None:
        from receiver.store import registry
        from receiver.store.registry import SubscriptionRecord

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = Keys("{test}")
        await registry.put(
            client,
            keys,
            SubscriptionRecord(
                "sub-1",
                TENANT_ID,
                "security/alerts?$filter=x",
                "state",
                expires_at=clock.now().timestamp() + 10 * 24 * 3600,  # Graph's date
            ),
        )
        await client.set(
            keys.health("worker", "host-1"), json.dumps({"stream": "s", "at": 0}), ex=30
        )
        await client.set(keys.leader, "host-2")
        await client.xadd(keys.dlq("pager"), {"e": "{}"})
        await client.aclose()

    asyncio.run(healthy())
    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "contoso" in out and "sub-1" in out and "240.0h" in out
    assert "held by host-2" in out and "host-1" in out
    assert "pager" in out and "overall: OK" in out


def test_example_routes_send_one_message_per_incident(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped example: an incident and an alert of it land in one group per incident."""
    monkeypatch.setenv("REDIS_URL", redis_url)  # never the machine's own Redis
    example = Path(__file__).resolve().parents[2] / "config" / "receiver.example.yaml"
    for sample, incident in (
        ("incidents_list_docs_example.json", "2972395"),
        ("alert_v2_mde.json", "123"),
    ):
        assert main(["route", "test", str(SAMPLES / sample), "--config", str(example)]) == 0
        out = capsys.readouterr().out
        grouped = [line for line in out.splitlines() if "grouped by" in line]
        assert len(grouped) == 1, out
        assert f"incident_id='{incident}'" in grouped[0]

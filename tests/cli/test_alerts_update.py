"""`receiver alerts update ID`: against the simulator, the alert read back after each update;
refusals shown as Graph gave them; every update audited and queued for the pipeline."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from receiver.actions.audit import AuditRecord
from receiver.cli import main
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import SimulatorHandle
from tests.graph.helpers import tenant_entry


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command sets up logging for a terminal (root handler, quiet httpx): undo it, so
    later tests see the logging they expect."""
    names = ("", "httpx", "httpcore", "apscheduler", "msal", "urllib3")
    levels = {n: logging.getLogger(n).level for n in names}
    handlers = logging.getLogger().handlers[:]
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
def config(write_config: WriteConfig, simulator: SimulatorHandle, redis_url: str) -> str:
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["graph"] = {
        "authority_host": simulator.base_url,
        "graph_url": simulator.graph_url,
        "ca_bundle": str(simulator.ca_path),
        "max_retries": 0,
    }
    data["tenants"] = [tenant_entry(simulator.tenant, "contoso")]
    return str(write_config(data))


def _graph_alert(sim: SimulatorHandle, path: str) -> dict[str, Any]:
    with sim.graph() as graph:
        response = graph.get(path)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def _audit(redis_url: str) -> list[AuditRecord]:
    with redis.Redis.from_url(redis_url) as r:
        return [AuditRecord.from_json(f[b"r"]) for _, f in r.xrange(Keys("{test}").actions_audit)]


def test_v2_update_is_read_back_audited_and_queued(
    config: str, simulator: SimulatorHandle, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tenant, kind="v2")
    assert (
        main(
            [
                "alerts",
                "update",
                alert_id,
                "--config",
                config,
                "--status",
                "resolved",
                "--classification",
                "truePositive",
                "--determination",
                "malware",
                "--assigned-to",
                "adele@contoso.com",
                "--comment",
                "contained",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"alert {alert_id} updated (tenant contoso, alerts_v2)" in out
    assert "status: resolved" in out and "determination: malware" in out
    assert "latest: contained" in out

    alert = _graph_alert(simulator, f"/security/alerts_v2/{alert_id}")
    assert alert["status"] == "resolved" and alert["classification"] == "truePositive"
    assert alert["determination"] == "malware" and alert["assignedTo"] == "adele@contoso.com"
    assert [c["comment"] for c in alert["comments"]] == ["contained"]

    [record] = _audit(redis_url)
    assert record.via == "cli" and record.outcome == "done" and record.alert_id == alert_id
    assert record.by.startswith("cli:") and "status=resolved" in record.changes
    keys = Keys("{test}")
    with redis.Redis.from_url(redis_url) as r:
        [(_, fields)] = r.xrange(keys.notifications)
        timeline = [json.loads(e) for e in r.lrange(keys.deliveries(tenant, alert_id), 0, -1)]
    entry = NotificationEntry.from_fields(fields)
    assert entry.source == "action" and entry.resource == f"security/alerts_v2/{alert_id}"
    assert json.loads(entry.resource_data)["status"] == "resolved"
    assert timeline[-1]["event"] == "action" and timeline[-1]["outcome"] == "done"


def test_legacy_update_carries_vendor_information_for_the_user(
    config: str, simulator: SimulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.control.legacy_alerts("live")  # the retired legacy API, served for this test
    tenant = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tenant, kind="legacy")
    assert (
        main(
            [
                "alerts",
                "update",
                alert_id,
                "--config",
                config,
                "--source",
                "legacy",
                "--status",
                "resolved",
                "--classification",
                "falsePositive",
                "--comment",
                "expected admin activity",
                "--json",
            ]
        )
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    alert = _graph_alert(simulator, f"/security/alerts/{alert_id}")
    assert shown["status"] == alert["status"] == "resolved"
    assert alert["feedback"] == "falsePositive" and alert["closedDateTime"]
    assert alert["comments"][-1] == "expected admin activity"
    # auto-detection finds a legacy id too; "new" maps to legacy's newAlert
    assert main(["alerts", "update", alert_id, "--config", config, "--status", "new"]) == 0
    assert "(tenant contoso, alerts_v1)" in capsys.readouterr().out
    assert _graph_alert(simulator, f"/security/alerts/{alert_id}")["status"] == "newAlert"


def test_legacy_determination_is_refused_before_graph(
    config: str, simulator: SimulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.control.legacy_alerts("live")  # the retired legacy API, served for this test
    tenant = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tenant, kind="legacy")
    before = _graph_alert(simulator, f"/security/alerts/{alert_id}")
    assert (
        main(
            [
                "alerts",
                "update",
                alert_id,
                "--config",
                config,
                "--status",
                "resolved",
                "--determination",
                "malware",
            ]
        )
        == 1
    )
    assert "legacy alerts (security/alerts) have no determination" in capsys.readouterr().err
    after = _graph_alert(simulator, f"/security/alerts/{alert_id}")
    assert after["status"] == before["status"]
    assert after["lastModifiedDateTime"] == before["lastModifiedDateTime"]


def test_graph_refusal_is_shown_with_code_and_message(
    config: str, simulator: SimulatorHandle, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tenant, kind="v2")
    assert (
        main(["alerts", "update", alert_id, "--config", config, "--classification", "probablyBad"])
        == 1
    )
    err = capsys.readouterr().err
    assert "Microsoft Graph refused the update: HTTP 400 BadRequest" in err
    assert "Invalid value 'probablyBad' for property 'classification'" in err
    assert "request-id" in err
    assert _graph_alert(simulator, f"/security/alerts_v2/{alert_id}")["classification"] in (
        None,
        "unknown",
    )
    [record] = _audit(redis_url)
    assert record.outcome == "graph_refused" and "probablyBad" in record.graph


def test_unknown_alert_and_usage_errors(
    config: str, simulator: SimulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["alerts", "update", "no-such-alert", "--config", config, "--status", "resolved"]) == 1
    )
    assert "no alert no-such-alert in tenant contoso (alerts_v2 or legacy)" in (
        capsys.readouterr().err
    )
    assert main(["alerts", "update", "x", "--config", config]) == 2
    assert "give at least one of" in capsys.readouterr().err
    assert (
        main(
            [
                "alerts",
                "update",
                "x",
                "--config",
                config,
                "--tenant",
                "fabrikam",
                "--status",
                "resolved",
            ]
        )
        == 2
    )
    assert (
        "receiver alerts update: no tenant 'fabrikam' in the settings (configured: contoso)"
        in capsys.readouterr().err
    )
    # The tenant by name or id in any case (Settings.find_tenant), as every command reads it.
    for name in ("CONTOSO", simulator.tenant.tenant_id.upper()):
        update = ["alerts", "update", "no-such-alert", "--tenant", name, "--status", "resolved"]
        assert main([*update, "--config", config]) == 1
        assert "no alert no-such-alert in tenant contoso" in capsys.readouterr().err

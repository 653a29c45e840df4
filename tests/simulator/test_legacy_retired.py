"""The legacy alerts API as Graph serves it since its retirement (2026-10-15): empty lists,
404 `itemNotFound` for one alert, and subscriptions that are created but never notify.

Every moment here is taken from the simulator's own clock, so the tests hold on any date.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from receiver.simulator import cli
from receiver.simulator.clock import parse_datetime, start_offset
from receiver.simulator.config import SimulatorConfig
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle

FILTERED = "security/alerts?$filter=vendorInformation/provider eq 'IPC'"


def _subscribe(sim: SimulatorHandle, graph: httpx.Client, url: str) -> httpx.Response:
    now = parse_datetime(sim.control.clock()["now"])
    expires = (now + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    return graph.post(
        "/subscriptions",
        json={
            "changeType": "created,updated",
            "notificationUrl": url,
            "resource": FILTERED,
            "expirationDateTime": expires,
            "clientState": "s3cret",
        },
    )


def _assert_item_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "itemNotFound"
    assert error["innerError"]["request-id"] == response.headers["request-id"]


def test_retired_reads_are_empty_and_single_alerts_404(
    make_simulator: Callable[..., SimulatorHandle],
) -> None:
    sim = make_simulator(legacy_alerts="retired")
    tid = sim.tenant.tenant_id
    alert_id = sim.control.create_alert(tid, provider="IPC")  # stored, never served
    v2_id = sim.control.create_alert(tid, kind="v2")
    assert [a["id"] for a in sim.control.alerts(tid)] == [alert_id]
    with sim.graph() as graph:
        listed = graph.get("/security/alerts")
        filtered = graph.get("/security/alerts", params={"$filter": "status eq 'newAlert'"})
        one = graph.get(f"/security/alerts/{alert_id}")
        patched = graph.patch(
            f"/security/alerts/{alert_id}",
            json={
                "status": "resolved",
                "vendorInformation": {"provider": "IPC", "vendor": "Microsoft"},
            },
        )
        v2 = graph.get(f"/security/alerts_v2/{v2_id}")
    assert listed.status_code == 200 and listed.json()["value"] == []
    assert "@odata.nextLink" not in listed.json()
    assert filtered.status_code == 200 and filtered.json()["value"] == []
    _assert_item_not_found(one)
    _assert_item_not_found(patched)
    assert sim.control.alerts(tid)[0]["status"] == "newAlert"  # the PATCH changed nothing
    assert v2.status_code == 200  # alerts_v2 is the API that works
    assert sim.control.counters()["graph.security.legacy_retired"] == 4


def test_retired_subscription_is_created_but_never_notifies(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(legacy_alerts="retired")
    receiver = loopback_receiver()
    with sim.graph() as graph:
        created = _subscribe(sim, graph, f"{receiver.url}/notify")
    assert created.status_code == 201, created.text
    assert len(receiver.handshakes()) == 1  # validated like any other subscription
    tid = sim.tenant.tenant_id
    alert_id = sim.control.create_alert(tid, provider="IPC")
    sim.control.update_alert(tid, alert_id, {"status": "inProgress"})
    counters = sim.control.counters()
    # The notifier decided synchronously: two matching changes, both silenced, none queued.
    assert counters["notifications.retired"] == 2
    assert "notifications.delivered" not in counters
    assert sim.control.deliveries(kind="notification") == []
    assert receiver.notifications() == []
    assert sim.control.subscriptions(tid)[0]["id"] == created.json()["id"]


def test_switching_to_live_serves_what_was_stored(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(legacy_alerts="retired")
    tid = sim.tenant.tenant_id
    alert_id = sim.control.create_alert(tid, provider="IPC")
    receiver = loopback_receiver()
    with sim.graph() as graph:
        assert _subscribe(sim, graph, f"{receiver.url}/notify").status_code == 201
        assert sim.control.legacy_alerts("live") == {
            "mode": "live",
            "live": True,
            "retiredAt": "2026-10-15T00:00:00.0000000Z",
        }
        assert [a["id"] for a in graph.get("/security/alerts").json()["value"]] == [alert_id]
        assert graph.get(f"/security/alerts/{alert_id}").status_code == 200
    sim.control.update_alert(tid, alert_id, {"status": "inProgress"})
    (notification,) = receiver.wait_for(1)
    assert [i["resource"] for i in notification.json()["value"]] == [f"security/alerts/{alert_id}"]
    assert sim.control.legacy_alerts("auto")["mode"] == "auto"
    sim.control.reset()
    assert sim.control.legacy_alerts()["mode"] == "retired"  # reset: back to the config


def test_auto_retires_on_the_virtual_clock(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    # The retirement an hour ahead of the simulator's "now", wherever the clock starts.
    retired_at = dt.datetime.now(dt.UTC) + start_offset() + dt.timedelta(hours=1)
    sim = make_simulator(legacy_alerts="auto", legacy_alerts_retired_at=retired_at)
    tid = sim.tenant.tenant_id
    receiver = loopback_receiver()
    alert_id = sim.control.create_alert(tid, provider="IPC")
    with sim.graph() as graph:
        assert sim.control.legacy_alerts()["live"] is True
        assert _subscribe(sim, graph, f"{receiver.url}/notify").status_code == 201
        sim.control.update_alert(tid, alert_id, {"status": "inProgress"})
        receiver.wait_for(1)
        assert graph.get(f"/security/alerts/{alert_id}").status_code == 200

        sim.control.advance_clock(hours=2)
        assert sim.control.legacy_alerts() == {
            "mode": "auto",
            "live": False,
            "retiredAt": sim.control.legacy_alerts()["retiredAt"],
        }
        assert graph.get("/security/alerts").json()["value"] == []
        _assert_item_not_found(graph.get(f"/security/alerts/{alert_id}"))
    sim.control.update_alert(tid, alert_id, {"status": "resolved"})
    assert sim.control.counters()["notifications.retired"] == 1
    assert len(receiver.notifications()) == 1  # the one from before the retirement


def test_cli_flag_and_config_check(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.build_config(parser.parse_args([]), tmp_path).legacy_alerts == "auto"
    live = cli.build_config(parser.parse_args(["--legacy-alerts", "live"]), tmp_path)
    assert live.legacy_alerts == "live"
    with pytest.raises(SystemExit):
        parser.parse_args(["--legacy-alerts", "sometimes"])
    with pytest.raises(ValueError, match="legacy_alerts must be one of live, retired, auto"):
        SimulatorConfig(legacy_alerts="sometimes")
    assert SimulatorConfig().legacy_alerts_retired_at == dt.datetime(2026, 10, 15, tzinfo=dt.UTC)

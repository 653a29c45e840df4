"""The faults the reliability harness needs: reordered notifications and a notification for
an alert that no longer exists."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle
from tests.simulator.test_notifier import _subscribe


@pytest.fixture
def simulator(make_simulator: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    """Every test here drives the legacy push path, so the retired legacy API runs live."""
    return make_simulator(legacy_alerts="live")


def test_reordered_notifications_arrive_newest_first_one_post_each(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    with simulator.graph() as graph:
        _subscribe(simulator, graph, f"{receiver.url}/notify")
    simulator.control.inject_fault("reorder_notifications", count=3)
    ids = [simulator.control.create_alert(tid, provider="IPC") for _ in range(3)]
    receiver.wait_for(3)
    posts = receiver.notifications()
    assert [len(p.json()["value"]) for p in posts] == [1, 1, 1]
    assert [p.json()["value"][0]["resourceData"]["id"] for p in posts] == ids[::-1]
    assert simulator.control.counters()["notifications.reordered"] == 3
    # The fault is used up: the next change is batched and sent in order again.
    later = simulator.control.create_alerts(tid, 2, provider="IPC")["ids"]
    receiver.wait_for(4)
    items = receiver.notifications()[3].json()["value"]
    assert [i["resourceData"]["id"] for i in items] == later


def test_a_deleted_alert_is_gone_and_its_late_notification_still_posted(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    with simulator.graph() as graph:
        _subscribe(simulator, graph, f"{receiver.url}/notify")
        alert_id = simulator.control.create_alert(tid, provider="IPC")
        receiver.wait_for(1)
        answer = simulator.control.http.request(
            "DELETE", f"/alerts/{alert_id}", json={"tenantId": tid, "notify": "updated"}
        )
        assert answer.status_code == 200 and answer.json() == {"deleted": alert_id, "notified": 1}
        receiver.wait_for(2)
        late = receiver.notifications()[1].json()["value"][0]
        assert (late["resourceData"]["id"], late["changeType"]) == (alert_id, "updated")
        assert graph.get(f"/security/alerts/{alert_id}").status_code == 404
    again = simulator.control.http.request("DELETE", f"/alerts/{alert_id}", json={"tenantId": tid})
    assert again.status_code == 404
    bad = simulator.control.http.request(
        "DELETE", f"/alerts/{alert_id}", json={"tenantId": tid, "notify": "exploded"}
    )
    assert bad.status_code == 400

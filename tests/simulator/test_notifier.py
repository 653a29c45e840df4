"""The notifier: Graph-shaped, batched change notifications, retries, faults, lifecycle events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest

from receiver import clock
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle
from tests.fixtures.waiting import notifier_settled


@pytest.fixture
def simulator(make_simulator: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    """Every test here drives the legacy push path, so the retired legacy API runs live."""
    return make_simulator(legacy_alerts="live")


def _subscribe(
    sim: SimulatorHandle,
    graph: httpx.Client,
    url: str,
    *,
    resource: str = "security/alerts?$filter=vendorInformation/provider eq 'IPC'",
    change_type: str = "created,updated",
    lifecycle: str | None = None,
    client_state: str | None = "s3cret",
    minutes: float = 24 * 60,
) -> dict[str, object]:
    expires = clock.now() + dt.timedelta(minutes=minutes)
    body: dict[str, object] = {
        "changeType": change_type,
        "notificationUrl": url,
        "resource": resource,
        "expirationDateTime": expires.isoformat().replace("+00:00", "Z"),
    }
    if client_state is not None:
        body["clientState"] = client_state
    if lifecycle:
        body["lifecycleNotificationUrl"] = lifecycle
    response = graph.post("/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_batched_notifications_with_graph_shape(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    with simulator.graph() as graph:
        sub = _subscribe(simulator, graph, f"{receiver.url}/notify?source=graph")
    ids = simulator.control.create_alerts(tid, 3, provider="IPC")["ids"]
    simulator.control.create_alerts(tid, 2, provider="MCAS")  # filtered out
    receiver.wait_for(1)
    counters = notifier_settled(simulator.control)  # no second POST can come any more
    posts = receiver.notifications()
    items = [item for post in posts for item in post.json()["value"]]
    assert len(posts) == 1  # three changes inside the batch window: one POST
    assert counters["notifications.delivered"] == 1 and counters["notifications.items"] == 3
    assert sorted(i["resourceData"]["id"] for i in items) == sorted(ids)
    post = posts[0]
    assert post.path == "/notify" and post.query == {"source": ["graph"]}
    assert post.headers["Content-Type"].startswith("application/json")
    item = items[0]
    assert set(item) == {
        "subscriptionId",
        "subscriptionExpirationDateTime",
        "changeType",
        "resource",
        "resourceData",
        "clientState",
        "tenantId",
    }
    assert item["subscriptionId"] == sub["id"]
    assert item["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert item["changeType"] == "created"
    assert item["clientState"] == "s3cret"
    assert item["tenantId"] == tid
    alert_id = item["resourceData"]["id"]
    assert item["resource"] == f"security/alerts/{alert_id}"
    assert item["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.alert",
        "@odata.id": f"Security/Alerts/{alert_id}",
        "id": alert_id,
    }


def test_update_via_graph_patch_notifies_updated(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tid, provider="IPC")
    with simulator.graph() as graph:
        _subscribe(
            simulator,
            graph,
            receiver.url,
            resource=f"security/alerts/{alert_id}",
            change_type="updated",
            client_state=None,
        )
        graph.patch(
            f"/security/alerts/{alert_id}",
            json={
                "status": "inProgress",
                "vendorInformation": {"provider": "IPC", "vendor": "Microsoft"},
            },
        )
    item = receiver.wait_for(1)[0].json()["value"][0]
    assert item["changeType"] == "updated"
    assert "clientState" not in item
    simulator.control.create_alert(tid, provider="IPC")  # created: not subscribed
    counters = notifier_settled(simulator.control)
    assert len(receiver.notifications()) == 1
    assert counters["notifications.delivered"] == 1 and counters["notifications.items"] == 1


def test_failing_receiver_is_retried(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver(statuses=[500, 503, 202])
    with simulator.graph() as graph:
        _subscribe(simulator, graph, receiver.url)
    simulator.control.create_alert(simulator.tenant.tenant_id, provider="IPC")
    posts = receiver.wait_for(3)
    assert posts[0].body == posts[2].body
    rows = simulator.control.wait_for_deliveries(lambda r: len(r) == 3, kind="notification")
    assert [(r["attempt"], r["statusCode"]) for r in rows] == [(1, 500), (2, 503), (3, 202)]
    assert all(r["url"] == receiver.url for r in rows)


def test_notifications_give_up_after_max_age(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(notifier_max_age_s=0.3, legacy_alerts="live")
    receiver = loopback_receiver(statuses=[500])
    with sim.graph() as graph:
        _subscribe(sim, graph, receiver.url)
    sim.control.create_alert(sim.tenant.tenant_id, provider="IPC")
    counters = notifier_settled(sim.control)  # gave up: no retry is left to come
    assert counters["notifications.abandoned"] == 1
    assert "notifications.delivered" not in counters
    attempts = sim.control.deliveries(kind="notification")
    # How many attempts fit in 0.3 s depends on the machine; that every attempt the
    # simulator made reached the receiver, and none came after it gave up, does not.
    assert (
        len(receiver.notifications())
        == len(attempts)
        == counters["notifications.failed_attempts"]
        >= 2
    )
    assert [r["attempt"] for r in attempts] == list(range(1, len(attempts) + 1))


def test_drop_and_duplicate_faults(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    with simulator.graph() as graph:
        _subscribe(simulator, graph, receiver.url)
    simulator.control.inject_fault("drop_notifications", count=1)
    simulator.control.create_alert(tid, provider="IPC")  # dropped
    counters = notifier_settled(simulator.control)  # the dropped one is not sent later either
    assert counters["notifications.dropped"] == 1 and "notifications.items" not in counters
    assert receiver.notifications() == []
    simulator.control.inject_fault("duplicate_notifications", count=1)
    duplicated = simulator.control.create_alert(tid, provider="IPC")
    receiver.wait_for(1)
    counters = notifier_settled(simulator.control)  # a third copy would be here by now
    items = [i for p in receiver.notifications() for i in p.json()["value"]]
    assert [i["resourceData"]["id"] for i in items] == [duplicated, duplicated]
    assert counters["notifications.dropped"] == 1
    assert counters["notifications.duplicated"] == 1
    assert counters["notifications.items"] == 2


def test_lifecycle_events(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    notify = loopback_receiver()
    lifecycle = loopback_receiver()
    with simulator.graph() as graph:
        sub = _subscribe(simulator, graph, notify.url, lifecycle=f"{lifecycle.url}/lifecycle")
        for event in ("reauthorizationRequired", "missed", "subscriptionRemoved"):
            simulator.control.lifecycle(str(sub["id"]), event)
        posts = lifecycle.wait_for(3)
        assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404  # removed
    items = [p.json()["value"][0] for p in posts]
    assert sorted(i["lifecycleEvent"] for i in items) == [
        "missed",
        "reauthorizationRequired",
        "subscriptionRemoved",
    ]
    for item in items:
        assert set(item) == {
            "subscriptionId",
            "subscriptionExpirationDateTime",
            "tenantId",
            "clientState",
            "lifecycleEvent",
        }
        assert item["subscriptionId"] == sub["id"]
        assert item["clientState"] == "s3cret"
    counters = notifier_settled(simulator.control)
    assert counters["lifecycles.delivered"] == 3 and "notifications.items" not in counters
    assert notify.notifications() == []


def test_expired_subscription_gets_nothing(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    tid = simulator.tenant.tenant_id
    with simulator.graph() as graph:
        _subscribe(simulator, graph, receiver.url, minutes=60)
    simulator.control.create_alert(tid, provider="IPC")
    receiver.wait_for(1)
    advanced = simulator.control.advance_clock(minutes=61)
    assert advanced["expiredSubscriptions"] == 1
    simulator.control.create_alert(tid, provider="IPC")
    counters = notifier_settled(simulator.control)
    assert len(receiver.notifications()) == 1
    assert counters["notifications.items"] == 1
    assert simulator.control.subscriptions() == []


def test_notification_times_follow_the_virtual_clock(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    simulator.control.advance_clock(days=2)
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tid, provider="IPC")
    alert = simulator.control.alerts(tid)[0]
    assert alert["id"] == alert_id
    created = dt.datetime.fromisoformat(alert["createdDateTime"][:19] + "+00:00")
    assert created > clock.now() + dt.timedelta(days=1)
    with simulator.graph() as graph:  # tokens still use real time
        _subscribe(simulator, graph, receiver.url, minutes=2 * 24 * 60 + 60)
        assert graph.get("/security/alerts").status_code == 200

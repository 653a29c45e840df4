"""/subscriptions: the validation handshake against real loopback receivers, and every limit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from receiver import clock
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle

RESOURCE = "security/alerts?$filter=vendorInformation/provider eq 'IPC'"


def _in(minutes: float) -> str:
    moment = clock.now() + dt.timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(url: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "changeType": "created,updated",
        "notificationUrl": url,
        "resource": RESOURCE,
        "expirationDateTime": _in(24 * 60),
        "clientState": "s3cret",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _create(graph: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return graph.post("/subscriptions", json=body)


def _error(response: httpx.Response) -> tuple[str, str]:
    error = response.json()["error"]
    return error["code"], error["message"]


def test_create_with_correct_echo(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    url = f"{receiver.url}/notify?tenant=abc"
    with simulator.graph() as graph:
        response = _create(graph, _body(url, lifecycleNotificationUrl=f"{receiver.url}/lifecycle"))
    assert response.status_code == 201, response.text
    sub = response.json()
    assert sub["resource"] == RESOURCE
    assert sub["applicationId"] == simulator.tenant.app.client_id
    assert sub["clientState"] == "s3cret"
    assert sub["notificationUrl"] == url
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["includeResourceData"] is False
    assert sub["encryptionCertificate"] is None
    assert sub["creatorId"]
    handshakes = receiver.handshakes()
    assert [h.path for h in handshakes] == ["/notify", "/lifecycle"]
    first = handshakes[0]
    assert first.query["tenant"] == ["abc"]  # the existing query string is kept
    assert first.headers["Content-Type"].startswith("text/plain")
    assert first.body == b""
    assert " " in first.query["validationToken"][0]  # opaque, URL-encoded on the wire


def test_wrong_echo_fails(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver(handshake="wrong")
    with simulator.graph() as graph:
        response = _create(graph, _body(receiver.url))
    assert response.status_code == 400
    assert _error(response) == (
        "InvalidRequest",
        "Subscription validation request failed. "
        "Response must exactly match validationToken query parameter.",
    )


def test_undecoded_echo_fails(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver(handshake="raw")
    with simulator.graph() as graph:
        assert _create(graph, _body(receiver.url)).status_code == 400


def test_non_200_fails(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver(handshake="status", handshake_status=202)
    with simulator.graph() as graph:
        response = _create(graph, _body(receiver.url))
    assert response.status_code == 400
    assert "must respond with 200 OK" in _error(response)[1]


def test_connection_refused_fails(simulator: SimulatorHandle) -> None:
    with simulator.graph() as graph:
        response = _create(graph, _body("http://127.0.0.1:9/closed"))
    assert response.status_code == 400
    assert _error(response)[0] == "InvalidRequest"


def test_slow_echo_times_out(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(handshake_timeout_s=0.3)
    receiver = loopback_receiver(handshake="slow", delay_s=0.8)
    with sim.graph() as graph:
        response = _create(graph, _body(receiver.url))
    assert response.status_code == 400
    assert _error(response) == ("InvalidRequest", "Subscription validation request timed out.")


def test_lifecycle_url_is_validated_too(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    good = loopback_receiver()
    bad = loopback_receiver(handshake="wrong")
    with simulator.graph() as graph:
        response = _create(graph, _body(good.url, lifecycleNotificationUrl=bad.url))
    assert response.status_code == 400
    assert len(bad.handshakes()) == 1


def test_https_only(make_simulator: Callable[..., SimulatorHandle]) -> None:
    sim = make_simulator(allow_http=False)
    with sim.graph() as graph:
        response = _create(graph, _body("http://127.0.0.1:9/x"))
        assert response.status_code == 400
        assert _error(response) == (
            "InvalidRequest",
            "NotificationUrl scheme='http' is not supported.",
        )
        response = _create(
            graph, _body("https://127.0.0.1:9/x", lifecycleNotificationUrl="http://127.0.0.1:9/y")
        )
        assert response.status_code == 400
        assert "scheme='http' is not supported" in _error(response)[1]


@pytest.mark.parametrize(
    ("overrides", "status", "code", "message"),
    [
        (
            {"expirationDateTime": 43_200 + 5},  # minutes from when the test runs
            400,
            "ExtensionError",
            "Subscription expiration can only be 43200 minutes in the future.",
        ),
        ({"expirationDateTime": -5}, 400, "InvalidRequest", None),
        (
            {"expirationDateTime": None},
            400,
            "InvalidRequest",
            "expirationDateTime is a required property for subscription creation.",
        ),
        ({"resource": "security/alerts"}, 400, "ExtensionError", None),
        ({"resource": "/Security/Alerts"}, 400, "ExtensionError", None),
        (
            {"resource": "security/alerts?$filter=status eq 'New'"},
            400,
            "BadRequest",
            "Invalid filter clause",
        ),
        (
            {"resource": "security/alerts?$filter=status eq"},
            400,
            "BadRequest",
            "Invalid filter clause",
        ),
        (
            {"resource": "security/alerts?$filter=startswith(title,'x')"},
            400,
            "BadRequest",
            "Invalid filter clause",
        ),
        ({"clientState": "x" * 129}, 400, "InvalidRequest", None),
        ({"changeType": "created,renamed"}, 400, "InvalidRequest", None),
        ({"latestSupportedTlsVersion": "v2_0"}, 400, "ValidationError", None),
    ],
)
def test_limits(
    simulator: SimulatorHandle,
    loopback_receiver: Callable[..., LoopbackReceiver],
    overrides: dict[str, Any],
    status: int,
    code: str,
    message: str | None,
) -> None:
    receiver = loopback_receiver()
    body = _body(receiver.url)
    body.update(overrides)
    # An expiration is given in minutes and made a date only now: one made when the tests were
    # collected would be minutes older by the time this runs (43205 became < 43200).
    if isinstance(body.get("expirationDateTime"), int):
        body["expirationDateTime"] = _in(body["expirationDateTime"])
    body = {k: v for k, v in body.items() if v is not None}
    with simulator.graph() as graph:
        response = _create(graph, body)
    assert response.status_code == status, response.text
    assert _error(response)[0] == code
    if message:
        assert _error(response)[1] == message
    assert receiver.handshakes() == []  # rejected before the handshake


def test_max_lifetime_is_allowed_and_128_char_client_state(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    with simulator.graph() as graph:
        response = _create(
            graph, _body(receiver.url, expirationDateTime=_in(43_200 - 1), clientState="x" * 128)
        )
    assert response.status_code == 201, response.text


def test_under_45_minutes_is_raised_to_45(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    with simulator.graph() as graph:
        response = _create(graph, _body(receiver.url, expirationDateTime=_in(5)))
    assert response.status_code == 201
    expires = dt.datetime.fromisoformat(response.json()["expirationDateTime"][:26] + "+00:00")
    minutes = (expires - clock.now()).total_seconds() / 60
    assert 44.5 < minutes <= 45.1


def test_duplicate_is_409(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    receiver = loopback_receiver()
    with simulator.graph() as graph:
        first = _create(graph, _body(receiver.url))
        again = _create(graph, _body(receiver.url, resource=f"/{RESOURCE}"))
        other_change = _create(graph, _body(receiver.url, changeType="updated"))
    assert again.status_code == 409
    assert _error(again)[1] == (
        f"Subscription Id {first.json()['id']} already exists for the requested combination"
    )
    assert other_change.status_code == 201


def test_security_alerts_need_security_events_readwrite(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(roles=("SecurityEvents.Read.All",))
    with sim.graph() as graph:
        response = _create(graph, _body(loopback_receiver().url))
    assert response.status_code == 403


def test_get_list_renew_delete_reauthorize(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    sim = make_simulator(subscription_page_size=2)
    receiver = loopback_receiver()
    with sim.graph() as graph:
        ids = [
            _create(graph, _body(receiver.url, resource=f"security/alerts/{n}")).json()["id"]
            for n in range(5)
        ]
        got = graph.get(f"/subscriptions/{ids[0]}").json()
        assert got["clientState"] is None  # never returned on reads
        seen: list[str] = []
        url: str | None = "/subscriptions"
        pages = 0
        while url:
            body = graph.get(url).json()
            seen += [s["id"] for s in body["value"]]
            assert all(s["clientState"] is None for s in body["value"])
            url = body.get("@odata.nextLink")
            pages += 1
        assert sorted(seen) == sorted(ids)
        assert pages == 3
        renewed = graph.patch(f"/subscriptions/{ids[0]}", json={"expirationDateTime": _in(600)})
        assert renewed.status_code == 200
        assert renewed.json()["expirationDateTime"] < got["expirationDateTime"]  # 10 h < 24 h
        too_long = graph.patch(f"/subscriptions/{ids[0]}", json={"expirationDateTime": _in(50_000)})
        assert too_long.status_code == 400
        assert graph.post(f"/subscriptions/{ids[0]}/reauthorize").status_code == 204
        assert graph.delete(f"/subscriptions/{ids[0]}").status_code == 204
        missing = graph.get(f"/subscriptions/{ids[0]}")
        assert missing.status_code == 404
        assert _error(missing)[0] == "ResourceNotFound"
        assert (
            graph.patch(
                f"/subscriptions/{ids[0]}", json={"expirationDateTime": _in(600)}
            ).status_code
            == 404
        )
    # another app in the tenant sees none of them
    other = sim.control.add_tenant({"tenantId": None, "apps": [{}]})
    with sim.graph(other) as graph:
        assert graph.get("/subscriptions").json()["value"] == []


def test_expired_subscription_is_gone(
    simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver]
) -> None:
    with simulator.graph() as graph:
        sub = _create(graph, _body(loopback_receiver().url, expirationDateTime=_in(60))).json()
        simulator.control.advance_clock(minutes=61)
        assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
        assert (
            graph.patch(
                f"/subscriptions/{sub['id']}", json={"expirationDateTime": _in(600)}
            ).status_code
            == 404
        )

"""`POST /v1.0/$batch` (and /beta): Graph's JSON batching, against a real simulator over HTTPS
with real tokens. Each item goes through the pipeline a direct request does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.simulator import SimulatorHandle

MakeSimulator = Callable[..., SimulatorHandle]


def _get(step_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "method": "GET", "url": url, **extra}


def _batch(
    sim: SimulatorHandle,
    requests: list[dict[str, Any]] | None = None,
    *,
    content: bytes | None = None,
    token: str | None = None,
    version: str = "v1.0",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or sim.token()}"}
    with sim.http_client(headers=headers, timeout=30.0) as client:
        url = f"{sim.base_url}/{version}/$batch"
        if content is not None:
            return client.post(url, content=content, headers={"Content-Type": "application/json"})
        return client.post(url, json={"requests": requests})


def _by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    items = response.json()["responses"]
    by_id = {item["id"]: item for item in items}
    assert len(by_id) == len(items)
    return by_id


def _batch_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"date", "request-id", "client-request-id"} <= set(error["innerError"])
    return error


def test_alerts_come_back_under_their_ids_in_reverse_order(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    ids = simulator.control.create_alerts(tid, 3, kind="v2", severity="high")["ids"]
    simulator.control.reset_counters()
    requests = [
        _get("first", f"/security/alerts_v2/{ids[0]}"),
        _get("second", f"security/alerts_v2/{ids[1]}"),  # relative without the slash
        _get("third", f"/security/alerts_v2/{ids[2]}", headers={"client-request-id": "c-3"}),
    ]
    response = _batch(simulator, requests)
    assert response.status_code == 200
    assert response.headers["request-id"]
    items = response.json()["responses"]
    assert [item["id"] for item in items] == ["third", "second", "first"]
    by_id = _by_id(response)
    for step_id, alert_id in zip(("first", "second", "third"), ids, strict=True):
        item = by_id[step_id]
        assert item["status"] == 200
        assert item["body"]["id"] == alert_id
        assert item["body"]["severity"] == "high"
        assert item["headers"]["Content-Type"].startswith("application/json")
        assert item["headers"]["OData-Version"] == "4.0"
        assert item["headers"]["request-id"]
    assert by_id["third"]["headers"]["client-request-id"] == "c-3"
    counters = simulator.control.counters()
    assert counters["graph.batch"] == 1
    assert counters["graph.batch_items"] == 3
    assert counters["graph.security"] == 3  # the items count in their own family


def test_beta_batch_and_a_list_with_a_query_string(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    simulator.control.create_alerts(tid, 3, kind="v2")
    response = _batch(
        simulator, [_get("list", "/security/alerts_v2?$top=2&$count=true")], version="beta"
    )
    item = _by_id(response)["list"]
    assert item["status"] == 200
    assert len(item["body"]["value"]) == 2
    assert item["body"]["@odata.count"] == 3
    assert item["body"]["@odata.context"].endswith("/beta/$metadata#security/alerts_v2")
    assert "$skip=2" in item["body"]["@odata.nextLink"]


def test_a_missing_alert_is_404_and_the_others_200(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    response = _batch(
        simulator,
        [
            _get("1", f"/security/alerts_v2/{alert_id}"),
            _get("2", "/security/alerts_v2/no-such-alert"),
            _get("3", f"/security/alerts_v2/{alert_id}"),
        ],
    )
    by_id = _by_id(response)
    assert [by_id[i]["status"] for i in ("1", "2", "3")] == [200, 404, 200]
    assert by_id["2"]["body"]["error"]["code"] == "NotFound"
    assert by_id["1"]["body"]["id"] == by_id["3"]["body"]["id"] == alert_id


def test_more_than_20_requests_is_400_maximum_value_exceeded(simulator: SimulatorHandle) -> None:
    url = "/security/alerts_v2"
    assert _batch(simulator, [_get(str(i), url) for i in range(20)]).status_code == 200
    simulator.control.reset_counters()
    error = _batch_error(_batch(simulator, [_get(str(i), url) for i in range(21)]))
    assert error["code"] == "MaximumValueExceeded"
    assert error["message"] == "Number of batch request steps exceeds the maximum value of 20."
    assert simulator.control.counters().get("graph.security", 0) == 0  # nothing ran


def test_duplicate_ids_are_400_whatever_their_case(simulator: SimulatorHandle) -> None:
    response = _batch(
        simulator, [_get("Alert-1", "/security/alerts_v2"), _get("alert-1", "/security/incidents")]
    )
    assert _batch_error(response)["code"] == "BadRequest"


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b"[]",
        b'{"requests": {"id": "1"}}',
        b'{"requests": [{"id": "1", "method": "GET"}]}',
        b'{"requests": [{"method": "GET", "url": "/security/alerts_v2"}]}',
        b'{"requests": [{"id": 1, "method": "GET", "url": "/security/alerts_v2"}]}',
        b'{"requests": [{"id": "1", "url": "/security/alerts_v2"}]}',
        # a body without a Content-Type header
        b'{"requests": [{"id": "1", "method": "PATCH", "url": "/security/alerts_v2/x",'
        b' "body": {"status": "resolved"}}]}',
        # dependsOn an id not in the batch, and a cycle
        b'{"requests": [{"id": "1", "method": "GET", "url": "/a", "dependsOn": ["9"]}]}',
        b'{"requests": [{"id": "1", "method": "GET", "url": "/a", "dependsOn": ["2"]},'
        b' {"id": "2", "method": "GET", "url": "/b", "dependsOn": ["1"]}]}',
    ],
)
def test_a_malformed_batch_is_400(simulator: SimulatorHandle, content: bytes) -> None:
    assert _batch_error(_batch(simulator, content=content))["code"] == "BadRequest"


def test_throttled_items_are_429_with_their_own_retry_after(make_simulator: MakeSimulator) -> None:
    sim = make_simulator(throttle=True, security_requests_per_minute=2)
    alert_id = sim.control.create_alert(sim.tenant.tenant_id, kind="v2")
    response = _batch(sim, [_get(str(i), f"/security/alerts_v2/{alert_id}") for i in range(4)])
    assert response.status_code == 200
    items = list(_by_id(response).values())
    # The batch itself is not counted: exactly the window's 2 items pass.
    assert sorted(item["status"] for item in items) == [200, 200, 429, 429]
    for item in items:
        if item["status"] == 429:
            assert 0 < float(item["headers"]["Retry-After"]) <= 60
            error = item["body"]["error"]
            assert error["code"] == "TooManyRequests"
            assert error["innerError"]["status"] == "429"
        else:
            assert "Retry-After" not in item["headers"]
            assert item["body"]["id"] == alert_id
    assert sim.control.counters()["graph.429"] == 2


def test_an_invalid_token_is_401_for_the_whole_batch(simulator: SimulatorHandle) -> None:
    simulator.control.reset_counters()
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    response = _batch(simulator, [_get("1", f"/security/alerts_v2/{alert_id}")], token="abc")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "responses" not in response.json()
    with simulator.http_client() as client:
        anonymous = client.post(f"{simulator.graph_url}/$batch", json={"requests": []})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"] == "Access token is empty."
    assert simulator.control.counters().get("graph.security", 0) == 0


def test_items_run_concurrently_under_injected_latency(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    url = f"/security/alerts_v2/{alert_id}"
    requests = [_get(str(i), url) for i in range(5)]
    _by_id(_batch(simulator, requests))  # the token is cached and the path warm
    simulator.control.inject_fault("graph_latency", ms=300)
    started = time.monotonic()
    response = _batch(simulator, requests)
    elapsed = time.monotonic() - started
    assert [item["status"] for item in _by_id(response).values()] == [200] * 5
    assert 0.3 <= elapsed < 2 * 0.3, elapsed


def test_depends_on_a_failed_item_is_424(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    simulator.control.reset_counters()
    response = _batch(
        simulator,
        [
            _get("missing", "/security/alerts_v2/no-such-alert"),
            _get("after-missing", f"/security/alerts_v2/{alert_id}", dependsOn=["MISSING"]),
            _get("found", f"/security/alerts_v2/{alert_id}"),
            _get("after-found", f"/security/alerts_v2/{alert_id}", dependsOn=["found"]),
        ],
    )
    by_id = _by_id(response)
    assert by_id["missing"]["status"] == 404
    assert by_id["after-missing"]["status"] == 424
    assert by_id["after-missing"]["body"]["error"]["code"] == "FailedDependency"
    assert by_id["found"]["status"] == by_id["after-found"]["status"] == 200
    assert simulator.control.counters()["graph.security"] == 3  # the 424 never ran


def test_depends_on_runs_in_order_and_item_bodies_reach_the_handler(
    simulator: SimulatorHandle,
) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    url = f"/security/alerts_v2/{alert_id}"
    response = _batch(
        simulator,
        [
            {
                "id": "update",
                "method": "PATCH",
                "url": url,
                "headers": {"Content-Type": "application/json"},
                "body": {"status": "inProgress", "assignedTo": "soc@contoso.com"},
            },
            _get("read", url, dependsOn=["update"]),
        ],
    )
    by_id = _by_id(response)
    assert by_id["update"]["status"] == 200, by_id["update"]
    assert by_id["read"]["body"]["status"] == "inProgress"
    assert by_id["read"]["body"]["assignedTo"] == "soc@contoso.com"


def test_item_headers_reach_the_handler(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(
        simulator.tenant.tenant_id, kind="v2", serviceSource="microsoftSentinel"
    )
    url = f"/security/alerts_v2/{alert_id}"
    response = _batch(
        simulator,
        [
            _get("plain", url),
            _get("include", url, headers={"Prefer": "include-unknown-enum-members"}),
        ],
    )
    by_id = _by_id(response)
    assert by_id["plain"]["body"]["serviceSource"] == "unknownFutureValue"
    assert "Preference-Applied" not in by_id["plain"]["headers"]
    assert by_id["include"]["body"]["serviceSource"] == "microsoftSentinel"
    assert by_id["include"]["headers"]["Preference-Applied"] == "include-unknown-enum-members"


def test_absolute_and_nested_batch_urls_are_400_items(simulator: SimulatorHandle) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    response = _batch(
        simulator,
        [
            _get("absolute", f"https://graph.microsoft.com/v1.0/security/alerts_v2/{alert_id}"),
            {"id": "nested", "method": "POST", "url": "/$batch"},
            # an item stays under its version root: no climbing to the control API
            _get("climb", "/../_sim/tenants"),
            _get("encoded-climb", "/%2e%2e/_sim/tenants"),
            _get("fine", f"/security/alerts_v2/{alert_id}"),
        ],
    )
    by_id = _by_id(response)
    for step_id in ("absolute", "nested", "climb", "encoded-climb"):
        assert by_id[step_id]["status"] == 400, by_id[step_id]
        assert by_id[step_id]["body"]["error"]["code"] == "BadRequest"
        assert "tenants" not in by_id[step_id]["body"]
    assert by_id["fine"]["status"] == 200


def test_items_get_injected_faults_and_roles_like_direct_requests(
    simulator: SimulatorHandle,
) -> None:
    alert_id = simulator.control.create_alert(simulator.tenant.tenant_id, kind="v2")
    simulator.control.inject_fault("graph_5xx", count=1, status=503)
    token = simulator.control.mint_token(
        simulator.tenant.tenant_id, simulator.tenant.app.client_id, roles=["Mail.Send"]
    )
    requests = [
        _get("1", f"/security/alerts_v2/{alert_id}", dependsOn=[]),
        _get("2", f"/security/alerts_v2/{alert_id}", dependsOn=["1"]),
    ]
    by_id = _by_id(_batch(simulator, requests, token=token))  # the batch needs no role
    assert by_id["1"]["status"] == 503  # the fault was the next request's: the first item's
    assert by_id["2"]["status"] == 424
    by_id = _by_id(_batch(simulator, requests, token=token))
    assert by_id["1"]["status"] == 403
    assert by_id["1"]["body"]["error"]["code"] == "Forbidden"

"""Evolvable enums on alerts_v2 and incidents, as Graph serves them: members listed after
`unknownFutureValue` only with `Prefer: include-unknown-enum-members`; determination
`confirmedActivity`; unclassified items carry "unknown", not null."""

from __future__ import annotations

import pytest

from receiver.simulator.payloads import INCIDENT_EVOLVABLE, V2_EVOLVABLE
from tests.fixtures.simulator import SimulatorHandle

INCLUDE = {"Prefer": "include-unknown-enum-members"}


def _sentinel_alert(sim: SimulatorHandle) -> str:
    return sim.control.create_alert(
        sim.tenant.tenant_id, kind="v2", serviceSource="microsoftSentinel"
    )


def test_the_evolvable_members_are_the_docs_tables() -> None:
    assert V2_EVOLVABLE["serviceSource"] == {
        "microsoftDefenderForCloud",
        "microsoftSentinel",
        "microsoftThreatIntelligence",
    }
    assert {
        "microsoftSentinel",
        "microsoftDefenderForCloud",
        "nrtAlerts",
        "builtInMl",
    } <= V2_EVOLVABLE["detectionSource"]
    assert "cloudAppSecurity" not in V2_EVOLVABLE["detectionSource"]
    assert {"status": frozenset({"awaitingAction"})} == INCIDENT_EVOLVABLE


def test_alert_without_the_header_gets_unknown_future_value(simulator: SimulatorHandle) -> None:
    alert_id = _sentinel_alert(simulator)
    mde = simulator.control.create_alert(
        simulator.tenant.tenant_id, kind="v2", serviceSource="microsoftDefenderForEndpoint"
    )
    with simulator.graph() as graph:
        plain = graph.get(f"/security/alerts_v2/{alert_id}")
        listed = graph.get("/security/alerts_v2").json()["value"]
    assert plain.status_code == 200
    assert "preference-applied" not in plain.headers
    alert = plain.json()
    assert alert["serviceSource"] == alert["detectionSource"] == "unknownFutureValue"
    assert alert["productName"] == "Microsoft Sentinel"  # a string, not an enum: kept
    by_id = {a["id"]: a for a in listed}
    assert by_id[alert_id]["serviceSource"] == "unknownFutureValue"
    assert by_id[mde]["serviceSource"] == "microsoftDefenderForEndpoint"  # a known member
    # Graph's store keeps the real member; only the answer hides it.
    (stored,) = [
        a for a in simulator.control.alerts(simulator.tenant.tenant_id, "v2") if a["id"] == alert_id
    ]
    assert stored["serviceSource"] == "microsoftSentinel"


@pytest.mark.parametrize(
    "prefer",
    [
        "include-unknown-enum-members",
        "return=representation, include-unknown-enum-members",
        "Include-Unknown-Enum-Members ,odata.maxpagesize=5",
    ],
)
def test_the_header_brings_the_real_members(simulator: SimulatorHandle, prefer: str) -> None:
    alert_id = _sentinel_alert(simulator)
    with simulator.graph() as graph:
        one = graph.get(f"/security/alerts_v2/{alert_id}", headers={"Prefer": prefer})
        listed = graph.get("/security/alerts_v2", headers={"Prefer": prefer})
        patched = graph.patch(
            f"/security/alerts_v2/{alert_id}",
            json={"status": "inProgress"},
            headers={"Prefer": prefer},
        )
    for response in (one, listed, patched):
        assert response.status_code == 200, response.text
        assert response.headers["preference-applied"] == "include-unknown-enum-members"
    assert one.json()["serviceSource"] == one.json()["detectionSource"] == "microsoftSentinel"
    assert listed.json()["value"][0]["serviceSource"] == "microsoftSentinel"
    assert patched.json()["serviceSource"] == "microsoftSentinel"


def test_incident_status_awaiting_action(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    made = simulator.control.create_incidents(tid, serviceSource="microsoftSentinel")
    (incident_id,) = made["ids"]
    with simulator.graph() as graph:
        patched = graph.patch(
            f"/security/incidents/{incident_id}", json={"status": "awaitingAction"}
        )
        plain = graph.get(f"/security/incidents/{incident_id}", params={"$expand": "alerts"})
        full = graph.get(
            f"/security/incidents/{incident_id}", params={"$expand": "alerts"}, headers=INCLUDE
        )
        filtered = graph.get(
            "/security/incidents", params={"$filter": "status eq 'awaitingAction'"}, headers=INCLUDE
        )
    assert patched.status_code == 200 and patched.json()["status"] == "unknownFutureValue"
    assert plain.json()["status"] == "unknownFutureValue"
    assert plain.json()["alerts"][0]["serviceSource"] == "unknownFutureValue"
    assert full.json()["status"] == "awaitingAction"
    assert full.json()["alerts"][0]["serviceSource"] == "microsoftSentinel"
    assert [i["id"] for i in filtered.json()["value"]] == [incident_id]


def test_unclassified_is_unknown_and_determination_is_confirmed_activity(
    simulator: SimulatorHandle,
) -> None:
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tid, kind="v2")
    with simulator.graph() as graph:
        alert = graph.get(f"/security/alerts_v2/{alert_id}").json()
        incident = graph.get(f"/security/incidents/{alert['incidentId']}").json()
        old_name = graph.patch(
            f"/security/alerts_v2/{alert_id}", json={"determination": "confirmedUserActivity"}
        )
        ok = graph.patch(
            f"/security/alerts_v2/{alert_id}",
            json={
                "classification": "informationalExpectedActivity",
                "determination": "confirmedActivity",
            },
        )
        filtered = graph.get(
            "/security/alerts_v2", params={"$filter": "classification eq 'unknown'"}
        )
    assert (alert["classification"], alert["determination"]) == ("unknown", "unknown")
    assert (incident["classification"], incident["determination"]) == ("unknown", "unknown")
    assert old_name.status_code == 400
    assert ok.status_code == 200 and ok.json()["determination"] == "confirmedActivity"
    assert filtered.json()["value"] == []


def test_prefer_header_parsing_is_per_preference(simulator: SimulatorHandle) -> None:
    """A preference that merely contains the words is not the preference."""
    alert_id = _sentinel_alert(simulator)
    with simulator.graph() as graph:
        response = graph.get(
            f"/security/alerts_v2/{alert_id}",
            headers={"Prefer": "x-include-unknown-enum-members-not"},
        )
    assert response.json()["serviceSource"] == "unknownFutureValue"
    assert "preference-applied" not in response.headers

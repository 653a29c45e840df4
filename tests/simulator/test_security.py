"""/security: legacy alerts, alerts_v2, incidents, secure scores, and sendMail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx

from receiver.simulator.clock import parse_datetime
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle


def _all_pages(graph: httpx.Client, url: str) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = graph.get(next_url)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        next_url = body.get("@odata.nextLink")
        pages += 1
    return items, pages


def test_legacy_alert_paging_filter_and_top(make_simulator: Callable[..., SimulatorHandle]) -> None:
    sim = make_simulator(alert_page_size=10, legacy_alerts="live")
    tid = sim.tenant.tenant_id
    ipc = sim.control.create_alerts(tid, 12, provider="IPC")["ids"]
    sim.control.create_alerts(tid, 13, provider="MCAS")
    with sim.graph() as graph:
        items, pages = _all_pages(graph, "/security/alerts")
        assert len(items) == 25 and pages == 3
        assert len({a["id"] for a in items}) == 25
        filtered, _ = _all_pages(
            graph, "/security/alerts?$filter=vendorInformation/provider eq 'IPC'"
        )
        assert sorted(a["id"] for a in filtered) == sorted(ipc)
        top = graph.get("/security/alerts", params={"$top": 5}).json()
        assert len(top["value"]) == 5
        assert "$top=5" in top["@odata.nextLink"] and "$skip=5" in top["@odata.nextLink"]
        assert graph.get("/security/alerts", params={"$top": 1001}).status_code == 400
        bad = graph.get("/security/alerts", params={"$filter": "status eq 'New'"})
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "Invalid filter clause"
        ordered = graph.get("/security/alerts", params={"$orderby": "title asc", "$top": 25})
        titles = [a["title"] for a in ordered.json()["value"]]
        assert titles == sorted(titles)


def test_legacy_alert_shape(make_simulator: Callable[..., SimulatorHandle]) -> None:
    simulator = make_simulator(legacy_alerts="live")
    tid = simulator.tenant.tenant_id
    for provider in (
        "IPC",
        "MCAS",
        "Azure Advanced Threat Protection",
        "Azure Sentinel",
        "Microsoft Defender ATP",
    ):
        alert_id = simulator.control.create_alert(tid, provider=provider, severity="high")
        with simulator.graph() as graph:
            alert = graph.get(f"/security/alerts/{alert_id}").json()
        assert alert["vendorInformation"]["provider"] == provider
        assert alert["vendorInformation"]["vendor"] == "Microsoft"
        assert alert["azureTenantId"] == tid
        assert alert["status"] == "newAlert"
        assert alert["severity"] == "high"
        assert alert["createdDateTime"].endswith("Z")


def test_legacy_patch_rules(make_simulator: Callable[..., SimulatorHandle]) -> None:
    simulator = make_simulator(legacy_alerts="live")
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(tid, provider="IPC")
    vendor = {"provider": "IPC", "vendor": "Microsoft"}
    with simulator.graph() as graph:
        before = graph.get(f"/security/alerts/{alert_id}").json()
        missing = graph.patch(f"/security/alerts/{alert_id}", json={"status": "inProgress"})
        assert missing.status_code == 400
        wrong = graph.patch(
            f"/security/alerts/{alert_id}",
            json={
                "status": "inProgress",
                "vendorInformation": {"provider": "MCAS", "vendor": "Microsoft"},
            },
        )
        assert wrong.status_code == 400
        readonly = graph.patch(
            f"/security/alerts/{alert_id}", json={"title": "x", "vendorInformation": vendor}
        )
        assert readonly.status_code == 400
        bad_enum = graph.patch(
            f"/security/alerts/{alert_id}", json={"status": "New", "vendorInformation": vendor}
        )
        assert bad_enum.status_code == 400
        ok = graph.patch(
            f"/security/alerts/{alert_id}",
            json={
                "status": "inProgress",
                "assignedTo": "soc@contoso.com",
                "tags": ["triage"],
                "vendorInformation": vendor,
            },
        )
        assert ok.status_code == 204
        represented = graph.patch(
            f"/security/alerts/{alert_id}",
            json={"feedback": "truePositive", "vendorInformation": vendor},
            headers={"Prefer": "return=representation"},
        )
        assert represented.status_code == 200
        after = represented.json()
    assert after["status"] == "inProgress"
    assert after["feedback"] == "truePositive"
    assert after["tags"] == ["triage"]
    assert after["lastModifiedDateTime"] > before["lastModifiedDateTime"]


def test_alerts_v2_last_update_filter_and_paging(
    make_simulator: Callable[..., SimulatorHandle],
) -> None:
    sim = make_simulator(alert_page_size=4)
    tid = sim.tenant.tenant_id
    old = sim.control.create_alerts(tid, 6, kind="v2")["ids"]
    sim.control.advance_clock(minutes=10)
    mark = sim.control.clock()["now"]
    sim.control.advance_clock(minutes=1)
    new = sim.control.create_alerts(tid, 5, kind="v2")["ids"]
    sim.control.update_alert(tid, old[0], {"status": "inProgress"})
    with sim.graph() as graph:
        items, pages = _all_pages(
            graph, f"/security/alerts_v2?$filter=lastUpdateDateTime gt {mark}"
        )
        assert sorted(a["id"] for a in items) == sorted([*new, old[0]])
        assert pages == 2
        older, _ = _all_pages(graph, f"/security/alerts_v2?$filter=lastUpdateDateTime le {mark}")
        assert len(older) == 5
        both, _ = _all_pages(
            graph,
            "/security/alerts_v2?$filter=lastUpdateDateTime ge "
            f"{mark} and (severity eq 'high' or severity ne 'high')",
        )
        assert len(both) == 6
        alert = graph.get(f"/security/alerts_v2/{new[0]}").json()
    assert alert["alertWebUrl"].startswith("https://security.microsoft.com/alerts/")
    assert alert["incidentWebUrl"].startswith("https://security.microsoft.com/incidents/")
    assert alert["tenantId"] == tid
    assert alert["evidence"] and all(
        e["@odata.type"].startswith("#microsoft.graph.security.") for e in alert["evidence"]
    )


def test_alerts_v2_update_and_comment(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    alert_id = simulator.control.create_alert(
        tid, kind="v2", serviceSource="microsoftDefenderForEndpoint"
    )
    with simulator.graph() as graph:
        updated = graph.patch(
            f"/security/alerts_v2/{alert_id}",
            json={
                "status": "resolved",
                "classification": "truePositive",
                "determination": "malware",
                "assignedTo": "soc",
            },
        )
        assert updated.status_code == 200
        assert updated.json()["resolvedDateTime"]
        assert (
            graph.patch(f"/security/alerts_v2/{alert_id}", json={"title": "x"}).status_code == 400
        )
        assert (
            graph.patch(f"/security/alerts_v2/{alert_id}", json={"status": "closed"}).status_code
            == 400
        )
        comments = graph.post(
            f"/security/alerts_v2/{alert_id}/comments",
            json={
                "@odata.type": "microsoft.graph.security.alertComment",
                "comment": "looked at it",
            },
        )
        assert comments.status_code == 200
        assert comments.json()["value"][-1]["comment"] == "looked at it"
        evidence = {
            e["@odata.type"]
            for e in graph.get(f"/security/alerts_v2/{alert_id}").json()["evidence"]
        }
    assert "#microsoft.graph.security.fileEvidence" in evidence
    assert "#microsoft.graph.security.deviceEvidence" in evidence


def test_incidents_expand_and_patch(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    created = simulator.control.create_incidents(tid, count=2, alerts=3)
    incident_id = created["ids"][0]
    with simulator.graph() as graph:
        listed = graph.get("/security/incidents", params={"$expand": "alerts"}).json()["value"]
        assert len(listed) == 2
        expanded = graph.get(f"/security/incidents/{incident_id}?$expand=alerts").json()
        assert sorted(a["id"] for a in expanded["alerts"]) == sorted(created["alerts"][incident_id])
        patched = graph.patch(
            f"/security/incidents/{incident_id}",
            json={"status": "resolved", "classification": "truePositive"},
        )
        assert patched.status_code == 200
        assert patched.json()["status"] == "resolved"
        active = graph.get("/security/incidents", params={"$filter": "status eq 'active'"})
        assert [i["id"] for i in active.json()["value"]] == [created["ids"][1]]


def test_secure_scores_and_profiles(simulator: SimulatorHandle) -> None:
    tid = simulator.tenant.tenant_id
    simulator.control.seed_secure_scores(tid, days=10, drop_on_day=2, drop_by=30)
    with simulator.graph() as graph:
        scores = graph.get("/security/secureScores", params={"$top": 10}).json()["value"]
        assert len(scores) == 10
        dates = [s["createdDateTime"] for s in scores]
        assert dates == sorted(dates, reverse=True)  # newest first
        assert scores[2]["currentScore"] < scores[3]["currentScore"] - 20  # the drop
        assert {
            "currentScore",
            "maxScore",
            "controlScores",
            "averageComparativeScores",
            "enabledServices",
            "licensedUserCount",
            "activeUserCount",
        } <= set(scores[0])
        profiles = graph.get("/security/secureScoreControlProfiles").json()["value"]
        profile_id = profiles[0]["id"]
        patched = graph.patch(
            f"/security/secureScoreControlProfiles/{profile_id}",
            json={"state": "ignored", "comment": "risk accepted", "assignedTo": "ciso@contoso.com"},
        )
        assert patched.status_code == 204
        assert (
            graph.patch(
                f"/security/secureScoreControlProfiles/{profile_id}", json={"state": "nope"}
            ).status_code
            == 400
        )
        profile = graph.get(f"/security/secureScoreControlProfiles/{profile_id}").json()
    assert profile["controlStateUpdates"][-1]["state"] == "Ignored"


def test_send_mail_is_recorded(simulator: SimulatorHandle) -> None:
    message = {
        "subject": "Alert",
        "body": {"contentType": "Text", "content": "hi"},
        "toRecipients": [{"emailAddress": {"address": "soc@contoso.com"}}],
    }
    with simulator.graph() as graph:
        response = graph.post(
            "/users/alerts@contoso.com/sendMail",
            json={"message": message, "saveToSentItems": False},
        )
    assert response.status_code == 202
    mails = simulator.control.mails()
    assert mails[0]["message"]["subject"] == "Alert"
    assert mails[0]["userId"] == "alerts@contoso.com"


def test_alert_generation_is_reproducible(make_simulator: Callable[..., SimulatorHandle]) -> None:
    first = make_simulator(random_seed=7)
    second = make_simulator(random_seed=7)
    titles = []
    for sim in (first, second):
        sim.control.create_alerts(sim.tenant.tenant_id, 5)
        titles.append(
            [(a["title"], a["severity"]) for a in sim.control.alerts(sim.tenant.tenant_id)]
        )
    assert titles[0] == titles[1]


def test_filters_accept_the_docs_enum_casing(
    make_simulator: Callable[..., SimulatorHandle],
    loopback_receiver: Callable[..., LoopbackReceiver],
) -> None:
    """The docs write `status eq 'NewAlert'` (legacy alerts) and `status eq 'Active'`
    (incidents); Graph matches enum members whatever their case."""
    sim = make_simulator(legacy_alerts="live")
    tid = sim.tenant.tenant_id
    legacy = sim.control.create_alert(tid)
    incident = sim.control.create_incidents(tid)["ids"][0]
    receiver = loopback_receiver()
    with sim.graph() as graph:
        by_docs = graph.get("/security/alerts", params={"$filter": "status eq 'NewAlert'"})
        active = graph.get("/security/incidents", params={"$filter": "status eq 'Active'"})
        severe = graph.get("/security/incidents", params={"$filter": "severity eq 'Medium'"})
        v2 = graph.get("/security/alerts_v2", params={"$filter": "status eq 'New'"})
        bad = graph.get("/security/alerts", params={"$filter": "status eq 'New'"})
        expires = parse_datetime(sim.control.clock()["now"]) + dt.timedelta(days=1)
        created = graph.post(
            "/subscriptions",
            json={
                "changeType": "updated",
                "notificationUrl": f"{receiver.url}/n",
                "resource": "security/alerts?$filter=status eq 'InProgress'",
                "expirationDateTime": expires.isoformat().replace("+00:00", "Z"),
            },
        )
    assert [a["id"] for a in by_docs.json()["value"]] == [legacy]
    assert [i["id"] for i in active.json()["value"]] == [incident]
    assert incident in [i["id"] for i in severe.json()["value"]]
    assert len(v2.json()["value"]) == 1  # the incident's alert: alerts_v2 status `new`
    assert bad.status_code == 400 and bad.json()["error"]["message"] == "Invalid filter clause"
    assert created.status_code == 201, created.text
    sim.control.update_alert(tid, legacy, {"status": "inProgress"})
    (notification,) = receiver.wait_for(1)
    assert notification.json()["value"][0]["resourceData"]["id"] == legacy

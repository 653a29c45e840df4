from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from receiver.envelope import (
    Entity,
    Envelope,
    from_incident,
    from_legacy,
    from_v2,
    material_changes,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


def test_legacy_alert() -> None:
    raw = sample("legacy_alert_ipc.json")
    env = from_legacy(raw, tenant="contoso")
    assert env.id == raw["id"]
    assert env.tenant_id == raw["azureTenantId"]
    assert (env.source_api, env.kind, env.tenant) == ("alerts_v1", "alert", "contoso")
    assert env.severity == "high"
    assert env.status == "new"  # legacy newAlert
    assert env.provider == "IPC"
    assert env.updated_at == raw["lastModifiedDateTime"]
    assert env.web_url.startswith("https://security.microsoft.com/alerts/")
    upn = raw["userStates"][0]["userPrincipalName"]
    assert Entity("user", upn) in env.entities
    assert env.value("raw.vendorInformation.provider") == "IPC"


def test_v2_alert() -> None:
    raw = sample("alert_v2_mde.json")
    env = from_v2(raw)
    assert (env.id, env.source_api) == (raw["id"], "alerts_v2")
    assert env.provider == "microsoftDefenderForEndpoint"
    assert env.incident_id == "123"
    assert env.web_url == raw["alertWebUrl"]
    assert env.mitre_techniques == tuple(raw["mitreTechniques"])
    kinds = {e.type for e in env.entities}
    assert {"user", "ip", "device", "file"} <= kinds
    assert env.version == raw["lastUpdateDateTime"]


def test_incident() -> None:
    raw = sample("incident.json")
    env = from_incident(raw)
    assert (env.kind, env.source_api, env.id) == ("incident", "incidents", raw["id"])
    assert env.title == raw["displayName"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HIGH", "high"), ("weird", "unknown"), (None, "unknown"), ("informational", "informational")],
)
def test_severity_normalised(value: Any, expected: str) -> None:
    raw = sample("legacy_alert_mcas.json") | {"severity": value}
    assert from_legacy(raw).severity == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("newAlert", "new"),
        ("inProgress", "inProgress"),
        ("resolved", "resolved"),
        ("odd", "unknown"),
    ],
)
def test_status_normalised(value: str, expected: str) -> None:
    assert from_legacy(sample("legacy_alert_mcas.json") | {"status": value}).status == expected


def test_json_round_trip() -> None:
    env = from_v2(sample("alert_v2_mde.json"), tenant="contoso").as_update(("status",))
    back = Envelope.from_json(env.to_json())
    assert back == env
    assert back.raw == env.raw
    assert back.is_update and back.changes == ("status",)


def test_values_for_matchers() -> None:
    env = from_v2(sample("alert_v2_mde.json"))
    assert env.value("severity") == "high"
    assert env.value("tags") == ",".join(env.tags)
    assert env.value("nope") is None
    assert env.value("raw.evidence.0.verdict") == "suspicious"
    assert env.value("raw.evidence") is None  # not a scalar
    assert env.value("raw.missing.path") is None


def test_material_changes() -> None:
    env = from_v2(sample("alert_v2_mde.json"))
    assert material_changes(None, env) == ()
    before = env.material()
    resolved = from_v2(
        sample("alert_v2_mde.json") | {"status": "resolved", "assignedTo": "soc@contoso.com"}
    )
    assert material_changes(before, resolved) == ("status", "assigned_to")
    assert material_changes(before, env) == ()


def test_docs_incident_example_reads_whatever_the_casing() -> None:
    """Microsoft's own "List incidents" example prints status "Active", severity "Medium" and
    classification "TruePositive" (tests/samples/README.md)."""
    raw = sample("incidents_list_docs_example.json")["value"][0]
    env = from_incident(raw)
    assert (env.kind, env.status, env.severity) == ("incident", "new", "medium")
    assert (env.classification, env.determination) == ("truePositive", "multiStagedAttack")
    assert env.incident_web_url == raw["incidentWebUrl"]
    lower = from_incident(
        raw
        | {
            "status": "active",
            "severity": "medium",
            "classification": "truePositive",
            "determination": "multiStagedAttack",
        }
    )
    assert lower.material() == env.material()  # the casing is no change worth a message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", "new"),
        ("Active", "new"),
        ("inProgress", "inProgress"),
        ("RESOLVED", "resolved"),
        ("redirected", "resolved"),
        ("awaitingAction", "inProgress"),
        ("unknownFutureValue", "unknown"),
        (None, "unknown"),
    ],
)
def test_incident_status_normalised(status: Any, expected: str) -> None:
    assert from_incident(sample("incident.json") | {"status": status}).status == expected


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("classification", "TruePositive", "truePositive"),
        ("classification", "unknown", ""),  # unclassified
        ("classification", None, ""),
        ("determination", "ConfirmedActivity", "confirmedActivity"),
        ("determination", "APT", "apt"),
        ("serviceSource", "MicrosoftSentinel", "microsoftSentinel"),
        ("serviceSource", "microsoftSentinel", "microsoftSentinel"),
    ],
)
def test_v2_enums_read_case_insensitively(field: str, value: Any, expected: str) -> None:
    env = from_v2(sample("alert_v2_mde.json") | {field: value})
    attribute = {"serviceSource": "provider"}.get(field, field)
    assert getattr(env, attribute) == expected


def test_incident_with_its_alerts_lists_them() -> None:
    alert = sample("alert_v2_mde.json")
    second = alert | {
        "id": "a2",
        "title": "Second",
        "severity": "low",
        "mitreTechniques": ["T1000"],
    }
    env = from_incident(sample("incident.json") | {"alerts": [alert, second]})
    assert "2 alert(s):" in env.description
    assert f"- [{alert['severity'].capitalize()}] {alert['title']}" in env.description
    assert "- [Low] Second" in env.description
    assert env.provider == "microsoftDefenderForEndpoint"  # the one service of its alerts
    assert "T1000" in env.mitre_techniques
    assert {"user", "device"} <= {e.type for e in env.entities}

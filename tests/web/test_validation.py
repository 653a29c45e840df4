"""The pure validator and the slow-answer window: no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.store.registry import SubscriptionRecord
from receiver.web import validation as v
from receiver.web.metrics import SlowAnswerWindow

TENANT = "11111111-1111-4111-8111-111111111111"
SUB = "76619225-ff6b-4489-96ca-4ef547e78b22"  # Graph's subscription ids are GUIDs
OTHER_SUB = "5cfe2387-163c-4006-81bb-1b5e1e060afe"
RECORD = SubscriptionRecord(SUB, TENANT, "security/alerts?$filter=x", "the-state")
ALLOWED = frozenset({TENANT})


def item(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "subscriptionId": SUB,
        "clientState": "the-state",
        "tenantId": TENANT,
        "changeType": "updated",
        "resource": "Security/Alerts/abc",
        "resourceData": {"@odata.type": "#Microsoft.Graph.alert", "id": "abc"},
        "subscriptionExpirationDateTime": "2026-12-29T10:00:00Z",
    }
    raw.update(overrides)
    return {k: val for k, val in raw.items() if val is not None}


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (item(), True),
        (item(resourceData=None), True),  # the id then comes from the resource path
        (item(changeType="created"), True),
        (item(changeType="created,updated"), False),
        (item(changeType="destroyed"), False),
        (item(subscriptionId=None), False),
        (item(subscriptionId=""), False),
        (item(subscriptionId=7), False),
        (item(tenantId=None), False),
        (item(resource=None), False),
        (item(resource="x" * 5000), False),
        (item(resourceData="abc"), False),
        (item(resourceData={"id": 5}), False),
        (item(clientState=None), True),  # missing: fails authorization later, not the schema
        (item(clientState=["a"]), False),
        (item(encryptedContent="x"), False),
        (item(lifecycleEvent="missed", changeType=None, resource=None), True),
        (item(lifecycleEvent="unknown"), False),
        # shape before any lookup: Graph's subscription and tenant ids are GUIDs
        (item(subscriptionId="sub-1"), False),
        (item(subscriptionId=SUB.upper()), True),
        (item(subscriptionId=SUB + "0"), False),
        (item(subscriptionId="x" * 2048), False),
        (item(tenantId="contoso.onmicrosoft.com"), False),
        # lone surrogates (JSON "\ud800") cannot be encoded for Redis or a comparison
        (item(subscriptionId="\ud800"), False),
        (item(clientState="state-\udfff"), False),
        (item(resource="Security/Alerts/\ud800"), False),
        (item(resourceData={"id": "\udc00"}), False),
        (item(clientState="état-€-😀"), True),  # any encodable text is fine
        ([], False),
        ("text", False),
        (None, False),
    ],
)
def test_schema(raw: Any, ok: bool) -> None:
    assert (v.check_item(raw) is not None) is ok


def test_resource_id_from_path_when_no_resource_data() -> None:
    parsed = v.check_item(item(resourceData=None, resource="Security/Alerts/xyz"))
    assert parsed is not None and parsed.resource_id == "xyz"


@pytest.mark.parametrize(
    ("overrides", "record", "reason"),
    [
        ({}, RECORD, None),
        ({"clientState": "the-statE"}, RECORD, v.CLIENT_STATE_MISMATCH),
        ({"clientState": None}, RECORD, v.CLIENT_STATE_MISMATCH),
        ({}, None, v.UNKNOWN_SUBSCRIPTION),
        ({"tenantId": "22222222-2222-4222-8222-222222222222"}, RECORD, v.TENANT_NOT_ALLOWED),
        ({"tenantId": TENANT.upper()}, RECORD, None),  # GUIDs compare case-insensitively
    ],
)
def test_authorize(
    overrides: dict[str, Any], record: SubscriptionRecord | None, reason: str | None
) -> None:
    parsed = v.check_item(item(**overrides))
    assert parsed is not None
    assert v.authorize(parsed, record, ALLOWED) == reason


def test_tenant_mismatch() -> None:
    other = "33333333-3333-4333-8333-333333333333"
    parsed = v.check_item(item(tenantId=other))
    assert parsed is not None
    assert v.authorize(parsed, RECORD, ALLOWED | {other}) == v.TENANT_MISMATCH


def test_validate_items_counts_by_reason_and_keeps_valid() -> None:
    items = [item(), item(clientState="no"), "junk", item(subscriptionId=OTHER_SUB), item()]
    out = v.validate_items(items, {SUB: RECORD}, ALLOWED, 123)
    assert len(out.entries) == 2
    assert out.entries[0].received_at_ms == 123
    assert dict(out.rejected) == {
        v.CLIENT_STATE_MISMATCH: 1,
        v.BAD_ITEM: 1,
        v.UNKNOWN_SUBSCRIPTION: 1,
    }
    assert "the-state" not in repr(out.entries)


def test_status_when_nothing_valid() -> None:
    forged = v.validate_items([item(clientState="x")], {SUB: RECORD}, ALLOWED, 0)
    assert forged.status_if_empty() == 403
    broken = v.validate_items(["x", item(clientState="x")], {SUB: RECORD}, ALLOWED, 0)
    assert broken.status_if_empty() == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", v.MALFORMED_JSON),
        (b"[]", v.BAD_ENVELOPE),
        (b'{"value": []}', v.BAD_ENVELOPE),
        (b'{"value": [1], "validationTokens": [1]}', v.BAD_ENVELOPE),
        (b'{"value": "x"}', v.BAD_ENVELOPE),
    ],
)
def test_parse_body_errors(body: bytes, reason: str) -> None:
    with pytest.raises(v.BodyError) as exc:
        v.parse_body(body)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        (
            "Validation: Testing client application reachability for subscription Request-Id: x",
            True,
        ),
        ("a", True),
        ("", False),
        ("x" * 1025, False),
        ("a\tb", False),
        ("\u202e", False),
    ],
)
def test_handshake_token_check(token: str, ok: bool) -> None:
    assert v.check_validation_token(token) is ok


def test_slow_answer_window_share_over_ten_minutes() -> None:
    now = [1000.0]
    window = SlowAnswerWindow(clock=lambda: now[0])
    for _ in range(90):
        window.record(0.01)
    for _ in range(5):
        window.record(2.9)  # exactly Graph's threshold: not slow
    for _ in range(10):
        window.record(2.95)  # over 2.9 s: slow by Graph's rule
    assert window.shares() == {2.9: 10 / 105}
    now[0] += 599  # still inside the 10-minute window
    window.record(0.01)
    assert window.shares()[2.9] == pytest.approx(10 / 106)
    now[0] += 2  # the first second has left the window
    assert window.shares() == {2.9: 0.0}

"""Signed action links (pure): claims, key rotation, tampering, expiry; the settings that
configure them; the legacy/v2 update bodies."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from receiver.actions.links import LinkError, LinkSigner
from receiver.actions.updates import AlertUpdate, UpdateRefused, for_action, legacy_body, v2_body
from receiver.config.files import ConfigError
from tests.fixtures.settings import MakeSettings, WriteConfig, base_settings_data

A = ("a", b"key-a-0123456789abcdefghijklmnopqrstuv")
B = ("b", b"key-b-0123456789abcdefghijklmnopqrstuv")
TENANT = "11111111-1111-4111-8111-111111111111"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_sign_and_verify_binds_alert_tenant_action() -> None:
    signer = LinkSigner([A], 600)
    before = int(time.time())
    claim = signer.verify(signer.sign("alert-1", TENANT, "alerts_v1", "resolve_false_positive"))
    assert (claim.alert_id, claim.tenant_id, claim.source_api, claim.action, claim.key_id) == (
        "alert-1",
        TENANT,
        "alerts_v1",
        "resolve_false_positive",
        "a",
    )
    assert before <= claim.issued_at and claim.expires_at == claim.issued_at + 600
    other = signer.verify(signer.sign("alert-1", TENANT, "alerts_v1", "resolve_false_positive"))
    assert other.nonce != claim.nonce  # every link is its own


def test_rotation_first_key_signs_every_key_verifies() -> None:
    old_token = LinkSigner([A], 600).sign("x", TENANT, "alerts_v2", "take")
    rotating = LinkSigner([B, A], 600)
    assert rotating.verify(old_token).key_id == "a"
    assert rotating.verify(rotating.sign("x", TENANT, "alerts_v2", "take")).key_id == "b"
    with pytest.raises(LinkError) as exc:
        LinkSigner([B], 600).verify(old_token)  # A retired
    assert exc.value.reason == "invalid"


def test_forgeries_are_invalid() -> None:
    signer = LinkSigner([A], 600)
    header, payload, signature = signer.sign("x", TENANT, "alerts_v2", "take").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    swapped = _b64({**claims, "aid": "y"})
    unsigned = _b64({"alg": "none", "kid": "a", "typ": "alert-action"})
    same_key_other_typ = jwt.encode(claims, A[1], algorithm="HS256", headers={"kid": "a"})
    wrong_action = jwt.encode(
        {**claims, "act": "delete"},
        A[1],
        algorithm="HS256",
        headers={"kid": "a", "typ": "alert-action"},
    )
    missing = jwt.encode(
        {k: v for k, v in claims.items() if k != "jti"},
        A[1],
        algorithm="HS256",
        headers={"kid": "a", "typ": "alert-action"},
    )
    for token in (
        f"{header}.{swapped}.{signature}",
        f"{unsigned}.{payload}.",
        same_key_other_typ,
        wrong_action,
        missing,
        "",
        "a.b.c",
        "x" * 5000,
    ):
        with pytest.raises(LinkError) as exc:
            signer.verify(token)
        assert exc.value.reason == "invalid", token


def test_expired_is_told_apart() -> None:
    past = LinkSigner([A], 60, clock=lambda: time.time() - 61)
    with pytest.raises(LinkError) as exc:
        LinkSigner([A], 60).verify(past.sign("x", TENANT, "alerts_v2", "take"))
    assert exc.value.reason == "expired"


def test_signing_refuses_what_cannot_be_acted_on() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        LinkSigner([A], 60).sign("x", TENANT, "alerts_v2", "delete")
    with pytest.raises(ValueError, match="no actions"):
        LinkSigner([A], 60).sign("x", TENANT, "incidents", "take")


def test_update_bodies() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    alert = {
        "vendorInformation": {"provider": "IPC", "vendor": "Microsoft", "subProvider": None},
        "comments": ["first"],
    }
    update = AlertUpdate(
        status="resolved",
        classification="informationalExpectedActivity",
        assigned_to="sam",
        comment="done",
    )
    body = legacy_body(update, alert, now)
    assert body == {
        "vendorInformation": {"provider": "IPC", "vendor": "Microsoft"},
        "status": "resolved",
        "closedDateTime": "2026-11-30T10:00:00Z",
        "feedback": "benignPositive",
        "assignedTo": "sam",
        "comments": ["first", "done"],
    }
    assert legacy_body(AlertUpdate(status="new"), alert, now)["status"] == "newAlert"
    with pytest.raises(UpdateRefused, match="no determination"):
        legacy_body(AlertUpdate(determination="malware"), alert, now)
    assert v2_body(for_action("take", "Adele")) == {"status": "inProgress", "assignedTo": "Adele"}
    assert v2_body(for_action("resolve_true_positive", "")) == {
        "status": "resolved",
        "classification": "truePositive",
    }


def test_settings_need_keys_and_name_the_problem(
    make_settings: MakeSettings, write_config: WriteConfig
) -> None:
    with pytest.raises(ConfigError) as exc:
        make_settings(actions={"enabled": True})
    assert "actions" in exc.value.render() and "signing_keys" in exc.value.render()
    short = "too-short-secret"
    data = base_settings_data()
    data["actions"] = {"enabled": True, "signing_keys": [{"id": "k1", "key": short}]}
    path = write_config(data)
    from receiver.config.loader import load_settings

    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    text = exc.value.render()
    assert str(path) in text and "actions.signing_keys[0].key" in text
    assert "at least 32 bytes" in text and short not in text
    with pytest.raises(ConfigError, match="would hide a web endpoint"):
        make_settings(
            actions={
                "enabled": True,
                "path": "/webhooks",
                "signing_keys": [{"id": "k1", "key": "k" * 40}],
            }
        )


def test_signing_key_from_env_and_file(make_settings: MakeSettings, tmp_path: Any) -> None:
    from receiver.config.loader import settings_from_mapping

    key_file = tmp_path / "actions.key"
    key_file.write_text("f" * 40 + "\n")
    data = base_settings_data()
    data["actions"] = {
        "enabled": True,
        "signing_keys": [
            {"id": "new", "key_env": "ACTIONS_KEY"},
            {"id": "old", "key_file": str(key_file)},
        ],
    }
    settings = settings_from_mapping(data, environ={"ACTIONS_KEY": "e" * 40})
    keys = settings.actions.signing_keys
    assert [k.key.get_secret_value() for k in keys] == ["e" * 40, "f" * 40]
    assert "e" * 40 not in repr(settings)

"""Rich notifications: validation tokens (JWT) and encryptedContent, per Graph's spec.

A certificate and a token-signing key are generated here; the signing keys are served as a
JWKS by a real loopback server, like the Microsoft identity platform's keys endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.config.files import ConfigError
from receiver.config.settings import Settings
from receiver.store.registry import SubscriptionRecord
from receiver.web.app import create_app, web_state
from receiver.web.rich import (
    GRAPH_PUBLISHER_APP_ID,
    RichError,
    ThrottledWarning,
    decrypt_content,
)
from tests.fixtures.settings import CLIENT_ID, TENANT_ID, MakeSettings
from tests.fixtures.web import JSON, asgi_client, body, notification, register, served
from tests.web.test_ingest import stream

RESOURCE_DATA = {
    "@odata.type": "#Microsoft.Graph.chatMessage",
    "id": "1616990032035",
    "body": {"content": "a rich notification"},
}


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = _rsa()
KID = "test-kid-1"
CERT_KEYS = {"cert-1": _rsa(), "cert-2": _rsa()}


def encrypt(
    data: dict[str, Any], cert_id: str = "cert-1", key: rsa.RSAPrivateKey | None = None
) -> dict[str, str]:
    """encryptedContent as Graph builds it."""
    sym = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(data).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(sym), modes.CBC(sym[:16])).encryptor()
    cipher = encryptor.update(plain) + encryptor.finalize()
    public = (key or CERT_KEYS[cert_id]).public_key()
    data_key = public.encrypt(
        sym,
        OAEP(
            mgf=MGF1(algorithm=hashes.SHA1()),  # noqa: S303
            algorithm=hashes.SHA1(),  # noqa: S303
            label=None,
        ),
    )
    return {
        "data": base64.b64encode(cipher).decode(),
        "dataSignature": base64.b64encode(hmac.new(sym, cipher, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": cert_id,
        "encryptionCertificateThumbprint": "07293748CC064953A3052FB978C735FB89E61C3D",
    }


def token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "aud": CLIENT_ID,
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "tid": TENANT_ID,
        "azp": GRAPH_PUBLISHER_APP_ID,
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, SIGNING_KEY, algorithm="RS256", headers={"kid": KID})


@pytest.fixture
async def keys_url() -> AsyncIterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})

    async def keys(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    async with served(Starlette(routes=[Route("/keys", keys)])) as url:
        yield url + "/keys"


@pytest.fixture
def rich_settings(
    make_settings: MakeSettings, redis_url: str, keys_url: str, tmp_path: Path
) -> Settings:
    certs = []
    for cert_id, key in CERT_KEYS.items():
        path = tmp_path / f"{cert_id}.key.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        certs.append({"id": cert_id, "private_key_file": str(path)})
    return make_settings(
        redis_url=redis_url,
        web={"rich_notifications": {"enabled": True, "keys_url": keys_url, "certificates": certs}},
    )


def rich_item(rec: SubscriptionRecord, content: dict[str, str]) -> dict[str, Any]:
    return notification(
        rec,
        "1616990032035",
        encryptedContent=content,
        resource="teams('x')/channels('y')/messages('1616990032035')",
    )


async def post(
    settings: Settings, *items: dict[str, Any], tokens: list[str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    app = create_app(settings)
    extra = {"validationTokens": tokens} if tokens is not None else {}
    async with asgi_client(app) as client:
        r = await client.post("/webhooks/graph", content=body(*items, **extra), headers=JSON)
    return r.status_code, (r.json() if r.content else {}), app


async def test_valid_token_and_content_decrypted(rich_settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, rich_settings)
    status, _, _ = await post(
        rich_settings, rich_item(rec, encrypt(RESOURCE_DATA)), tokens=[token()]
    )
    assert status == 202
    [entry] = stream(redis_url, rich_settings)
    assert json.loads(entry["resource_data"]) == RESOURCE_DATA


async def test_certificate_rotation_two_at_once(rich_settings: Settings, redis_url: str) -> None:
    rec = await register(redis_url, rich_settings)
    status, _, _ = await post(
        rich_settings,
        rich_item(rec, encrypt(RESOURCE_DATA, "cert-1")),
        rich_item(rec, encrypt(RESOURCE_DATA, "cert-2")),
        tokens=[token()],
    )
    assert status == 202
    assert len(stream(redis_url, rich_settings)) == 2


def _tamper(content: dict[str, str]) -> dict[str, str]:
    raw = bytearray(base64.b64decode(content["data"]))
    raw[5] ^= 0x01
    return dict(content, data=base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize(
    ("make_content", "tokens", "reason"),
    [
        (lambda: _tamper(encrypt(RESOURCE_DATA)), lambda: [token()], "bad_encrypted_content"),
        (
            lambda: dict(
                encrypt(RESOURCE_DATA), dataSignature=base64.b64encode(b"x" * 32).decode()
            ),
            lambda: [token()],
            "bad_encrypted_content",
        ),
        (
            lambda: dict(encrypt(RESOURCE_DATA), encryptionCertificateId="cert-9"),
            lambda: [token()],
            "bad_encrypted_content",
        ),
        (
            lambda: encrypt(RESOURCE_DATA, "cert-1", key=_rsa()),
            lambda: [token()],
            "bad_encrypted_content",
        ),
        (
            lambda: dict(encrypt(RESOURCE_DATA), data="not base64!"),
            lambda: [token()],
            "bad_encrypted_content",
        ),
        (lambda: encrypt(RESOURCE_DATA), lambda: [], "bad_validation_token"),
        (
            lambda: encrypt(RESOURCE_DATA),
            lambda: [token(exp=int(time.time()) - 3600)],
            "bad_validation_token",
        ),
        (
            lambda: encrypt(RESOURCE_DATA),
            lambda: [token(aud="99999999-9999-4999-8999-99999999")],
            "bad_validation_token",
        ),
        (
            lambda: encrypt(RESOURCE_DATA),
            lambda: [token(azp="someone-else", appid=None)],
            "bad_validation_token",
        ),
        (
            lambda: encrypt(RESOURCE_DATA),
            lambda: [token(iss="https://sts.windows.net/00000000-0000-0000-0000-000000000000/")],
            "bad_validation_token",
        ),
        (lambda: encrypt(RESOURCE_DATA), lambda: [token()[:-4] + "AAAA"], "bad_validation_token"),
        (lambda: encrypt(RESOURCE_DATA), lambda: ["not-a-jwt"], "bad_validation_token"),
    ],
)
async def test_refused_and_nothing_stored(
    rich_settings: Settings, redis_url: str, make_content: Any, tokens: Any, reason: str
) -> None:
    rec = await register(redis_url, rich_settings)
    status, answer, app = await post(rich_settings, rich_item(rec, make_content()), tokens=tokens())
    if reason == "bad_validation_token":
        # concepts/change-notifications-with-resource-data.md: always 202, so a rogue actor
        # cannot tell whether it passed validation; the item is ignored.
        assert (status, answer) == (202, {})
    else:
        assert status == 403
        assert answer["rejected"] == {reason: 1}
    assert stream(redis_url, rich_settings) == []
    assert (
        web_state(app).metrics.registry.get_sample_value(
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": reason},
        )
        == 1
    )


async def test_fail_closed_when_tokens_required(
    make_settings: MakeSettings, redis_url: str, keys_url: str
) -> None:
    settings = make_settings(
        redis_url=redis_url,
        web={
            "rich_notifications": {
                "enabled": True,
                "require_validation_tokens": True,
                "keys_url": keys_url,
            }
        },
    )
    rec = await register(redis_url, settings)
    status, answer, app = await post(settings, notification(rec, "a"))
    assert (status, answer) == (202, {})  # accepted, as Graph's docs ask, and dropped
    assert (
        web_state(app).metrics.registry.get_sample_value(
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": "bad_validation_token"},
        )
        == 1
    )
    status, _, _ = await post(settings, notification(rec, "b"), tokens=[token()])
    assert status == 202
    assert [e["resource_id"] for e in stream(redis_url, settings)] == ["b"]


async def test_encrypted_content_refused_when_not_configured(
    make_settings: MakeSettings, redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    rec = await register(redis_url, settings)
    status, _, app = await post(
        settings,
        rich_item(rec, encrypt(RESOURCE_DATA)),
        notification(rec, "plain"),
        tokens=[token()],
    )
    assert status == 202  # the plain item beside it is kept
    assert [e["resource_id"] for e in stream(redis_url, settings)] == ["plain"]
    assert (
        web_state(app).metrics.registry.get_sample_value(
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": "bad_encrypted_content"},
        )
        == 1
    )


def test_decrypt_checks_hmac_before_decrypting() -> None:
    content = encrypt(RESOURCE_DATA)
    assert json.loads(decrypt_content(content, CERT_KEYS)) == RESOURCE_DATA
    # valid HMAC over garbage that would not decrypt: refused for the HMAC, not the padding
    with pytest.raises(RichError, match="dataSignature"):
        decrypt_content(_tamper(content), CERT_KEYS)


def test_settings_refuse_incoherent_rich_config(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match="require_validation_tokens needs enabled"):
        make_settings(web={"rich_notifications": {"require_validation_tokens": True}})
    with pytest.raises(ConfigError, match="private_key_file does not exist"):
        make_settings(
            web={
                "rich_notifications": {
                    "enabled": True,
                    "certificates": [{"id": "c", "private_key_file": "/nonexistent.pem"}],
                }
            }
        )


def _encrypt_bytes(plain: bytes, cert_id: str = "cert-1") -> dict[str, str]:
    """encryptedContent around arbitrary bytes (Graph's scheme, any payload)."""
    sym = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(sym), modes.CBC(sym[:16])).encryptor()
    cipher = encryptor.update(padded) + encryptor.finalize()
    data_key = (
        CERT_KEYS[cert_id]
        .public_key()
        .encrypt(
            sym,
            OAEP(
                mgf=MGF1(algorithm=hashes.SHA1()),  # noqa: S303
                algorithm=hashes.SHA1(),  # noqa: S303
                label=None,
            ),
        )
    )
    return {
        "data": base64.b64encode(cipher).decode(),
        "dataSignature": base64.b64encode(hmac.new(sym, cipher, hashlib.sha256).digest()).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": cert_id,
    }


@pytest.mark.parametrize(
    "plain",
    [
        json.dumps(RESOURCE_DATA).encode("utf-16"),  # json.loads(bytes) would take it
        json.dumps(RESOURCE_DATA).encode("utf-32-le"),
        b'"just a string"',
        b"[1, 2]",
        b"\xff\xfe\x00",
    ],
    ids=["utf-16", "utf-32", "string", "array", "junk"],
)
async def test_authentic_content_that_is_not_utf8_json_object_is_a_400(
    rich_settings: Settings, redis_url: str, plain: bytes
) -> None:
    """Issue 15, 5: content that decrypted to UTF-16 JSON made a 500 (``.decode()``)."""
    rec = await register(redis_url, rich_settings)
    status, answer, app = await post(
        rich_settings, rich_item(rec, _encrypt_bytes(plain)), tokens=[token()]
    )
    assert (status, answer["rejected"]) == (400, {"bad_resource_data": 1})
    assert stream(redis_url, rich_settings) == []
    assert (
        web_state(app).metrics.registry.get_sample_value(
            "receiver_web_items_total",
            {"kind": "notification", "outcome": "rejected", "reason": "bad_resource_data"},
        )
        == 1
    )
    with pytest.raises(RichError):
        decrypt_content(_encrypt_bytes(plain), CERT_KEYS)


async def test_forged_client_state_costs_no_token_check_and_no_log(
    rich_settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15, 8: 64 junk tokens beside a forged clientState made 64 WARNING lines. The
    clientState is checked first; tokens are verified only for items that passed it."""
    rec = await register(redis_url, rich_settings)
    junk = [token(aud="99999999-9999-4999-8999-999999999999") for _ in range(64)]
    with caplog.at_level(logging.WARNING):
        status, answer, _ = await post(
            rich_settings,
            rich_item(rec, encrypt(RESOURCE_DATA)) | {"clientState": "forged"},
            tokens=junk,
        )
    assert (status, answer["rejected"]) == (403, {"client_state_mismatch": 1})
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_refused_tokens_are_logged_once_per_interval(
    rich_settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rec = await register(redis_url, rich_settings)
    junk = [token(aud="99999999-9999-4999-8999-999999999999") for _ in range(64)]
    content = body(rich_item(rec, encrypt(RESOURCE_DATA)), validationTokens=junk)
    with caplog.at_level(logging.WARNING):
        async with asgi_client(create_app(rich_settings)) as client:
            for _ in range(3):
                r = await client.post("/webhooks/graph", content=content, headers=JSON)
                assert (r.status_code, r.content) == (202, b"")
    lines = [r.getMessage() for r in caplog.records if "validation token" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("suspicious notification")


def test_throttled_warning_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    throttled = ThrottledWarning(logging.getLogger("test.throttled"), 10.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        assert throttled.warning("refused %s", "a")
        assert not throttled.warning("refused %s", "b")
        assert not throttled.warning("refused %s", "c")
        now[0] += 10
        assert throttled.warning("refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a",
        "refused d (2 more like it not logged)",
    ]


async def test_a_slow_key_endpoint_cannot_hold_the_answer_past_graphs_budget(
    rich_settings: Settings, redis_url: str
) -> None:
    """Graph gives up on an answer after 3 s: fetching signing keys is bounded well inside."""
    release = asyncio.Event()

    async def slow_keys(request: Request) -> JSONResponse:
        await release.wait()  # never answers while the test waits
        return JSONResponse({"keys": []})

    async with served(Starlette(routes=[Route("/keys", slow_keys)])) as url:
        web = rich_settings.web
        settings = rich_settings.model_copy(
            update={
                "web": web.model_copy(
                    update={
                        "rich_notifications": web.rich_notifications.model_copy(
                            update={"keys_url": url + "/keys"}
                        )
                    }
                )
            }
        )
        rec = await register(redis_url, settings)
        started = time.monotonic()
        status, answer, _ = await post(
            settings, rich_item(rec, encrypt(RESOURCE_DATA)), tokens=[token()]
        )
        elapsed = time.monotonic() - started
        release.set()
    assert (status, answer) == (202, {})  # the item failed its token: ignored, as the docs say
    assert elapsed < 2.0
    assert stream(redis_url, settings) == []

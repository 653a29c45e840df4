"""`receiver tenants check` against the simulator over HTTPS with the real MSAL: each missing
permission named with its fix, Entra's refusals in words, the push endpoint probed like Graph
does, --json, the results kept for /status, and the short form at a role's start."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from receiver.admin.health import gather
from receiver.cli import main
from receiver.config.loader import settings_from_mapping
from receiver.graph.check import (
    ALERT_READ,
    ALERT_WRITE,
    EVENTS_READ,
    EVENTS_WRITE,
    INCIDENT_READ,
    MAIL_SEND,
    credential_failure,
    missing_roles,
    needs,
    token_claims,
)
from receiver.graph.client import client_for
from receiver.graph.probes import startup_check
from receiver.simulator.state import ALL_ROLES
from receiver.store.client import make_redis
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import SimTenant, SimulatorHandle
from tests.graph.helpers import tenant_entry

CONSENT = 'then have an administrator click "Grant admin consent" for the tenant.'
SIGNING_KEY = "k" * 48


def _data(
    sim: SimulatorHandle,
    tenants: list[dict[str, Any]],
    redis_url: str = "redis://127.0.0.1:1/0",
    **extra: Any,
) -> dict[str, Any]:
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["graph"] = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
        "max_retries": 0,
    }
    data["tenants"] = tenants
    data.update(extra)
    return data


def _check(
    write_config: WriteConfig, data: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    config = write_config(data)
    code = main(["tenants", "check", "--config", str(config), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(out: str, check: str) -> list[str]:
    """The verdict lines of one check, each with the fix line under it when there is one."""
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.split()[1:2] == [check]:
            fix = lines[i + 1].strip() if i + 1 < len(lines) else ""
            found.append(line + ("\n" + fix if fix.startswith("fix:") else ""))
    return found


# --- every feature without its permission ------------------------------------------------

FEATURES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    # name: (the role left out, the feature as the check names it, tenant keys, top-level keys)
    "alerts_v2": (ALERT_READ, "poll alerts_v2", {"poll": {"alerts_v2": True}}, {}),
    "incidents": (
        INCIDENT_READ,
        "poll incidents",
        {"poll": {"alerts_v2": False, "incidents": True}},
        {},
    ),
    "secure_score": (
        EVENTS_READ,
        "Secure Score",
        {"poll": {"alerts_v2": False}, "secure_score": {"enabled": True}},
        {},
    ),
    "actions": (
        ALERT_WRITE,
        "alert updates (action links)",
        {"poll": {"alerts_v2": False}},
        {"actions": {"enabled": True, "signing_keys": [{"id": "k1", "key": SIGNING_KEY}]}},
    ),
    "graph_mail": (
        MAIL_SEND,
        "email sink mail (Graph sendMail)",
        {"poll": {"alerts_v2": False}},
        {
            "sinks": [
                {
                    "name": "mail",
                    "type": "email",
                    "transport": "graph",
                    "tenant": "contoso",
                    "sender": "soc@contoso.com",
                    "to": ["oncall@contoso.com"],
                }
            ]
        },
    ),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_missing_permission_is_named_with_its_fix(
    feature: str,
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    role, label, tenant_keys, top = FEATURES[feature]
    # The ReadWrite sibling would cover a Read role: leave both out.
    granted = [r for r in ALL_ROLES if r not in (role, role.replace(".Read.", ".ReadWrite."))]
    sim = make_simulator(roles=tuple(granted))
    code, out, _ = _check(
        write_config,
        _data(sim, [{**tenant_entry(sim.tenant, "contoso"), **tenant_keys}], **top),
        capsys,
    )
    assert code == 1
    [line] = _lines(out, "permissions")
    assert line.split("\n")[0].split()[:2] == ["FAIL", "permissions"]
    assert f"missing {role} for {label}; the token has " in line
    assert (
        "fix: In the app registration's API permissions, add the Microsoft Graph "
        f"application permission {role}, {CONSENT}"
    ) in line
    assert "=> contoso: cannot work (" in out


def test_a_legacy_subscription_needs_securityevents_readwrite(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    loopback_receiver: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(roles=tuple(r for r in ALL_ROLES if r != EVENTS_WRITE))
    receiver = loopback_receiver()
    entry = {
        **tenant_entry(
            sim.tenant,
            "contoso",
            subscriptions=[{"resource": "security/alerts?$filter=status eq 'newAlert'"}],
        )
    }
    data = _data(sim, [entry])
    data["web"] = {"public_url": receiver.url, "allow_http": True}
    code, out, _ = _check(write_config, data, capsys)
    assert code == 1
    [line] = _lines(out, "permissions")
    assert (
        f"missing {EVENTS_WRITE} for subscription on security/alerts?$filter=status eq 'newAlert'"
    ) in line
    assert f"application permission {EVENTS_WRITE}, {CONSENT}" in line


def test_healthy_tenant_and_one_missing_incidents(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator()
    lacking = sim.control.add_tenant(
        {
            "apps": [
                {
                    "credential": "secret",
                    "roles": [r for r in ALL_ROLES if not r.startswith("SecurityIncident.")],
                }
            ]
        }
    )
    poll = {"poll": {"alerts_v2": True, "incidents": True}}
    data = _data(
        sim,
        [
            {**tenant_entry(sim.tenant, "contoso"), **poll},
            {**tenant_entry(lacking, "fabrikam"), **poll},
        ],
    )
    code, out, _ = _check(write_config, data, capsys)
    assert code == 1
    contoso, fabrikam, summary = out.split("\n\n")
    assert [line.split()[:2] for line in contoso.splitlines()[1:]] == [
        ["ok", "credentials"],
        ["ok", "permissions"],
        ["ok", "alerts_v2"],
        ["ok", "incidents"],
        ["skip", "push"],
        ["=>", "contoso:"],
    ]
    assert contoso.splitlines()[-1] == "  => contoso: ready"
    assert "token obtained with a client secret" in contoso
    assert f"{ALERT_READ} (poll alerts_v2), {INCIDENT_READ} (poll incidents)" in contoso
    [incidents] = _lines(fabrikam, "incidents")
    assert (
        "FAIL  incidents    GET security/incidents?$top=1: 403 Forbidden: Missing "
        "application roles. API required roles: SecurityIncident.Read.All,"
        "SecurityIncident.ReadWrite.All, application roles: "
    ) in incidents
    assert f"permission {INCIDENT_READ}, {CONSENT}" in incidents
    assert _lines(fabrikam, "alerts_v2")[0].split()[0] == "ok"
    assert fabrikam.splitlines()[-1] == "  => fabrikam: cannot work (2 problems)"
    assert summary.strip() == "1 of 2 tenant(s) ready"
    # One tenant by name: only it, and it alone decides the exit code.
    code, alone, _ = _check(write_config, data, capsys, "contoso")
    assert code == 0 and "fabrikam" not in alone
    assert alone.strip().endswith("1 of 1 tenant(s) ready")
    print(out)  # as printed, for the record (pytest -s shows it)


def test_no_admin_consent_means_no_roles_at_all(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(roles=())
    code, out, _ = _check(write_config, _data(sim, [tenant_entry(sim.tenant, "contoso")]), capsys)
    assert code == 1
    [line] = _lines(out, "permissions")
    assert "the token has no roles at all: no application permission has admin consent" in line


# --- Entra's refusals, in words -----------------------------------------------------------


def _expired_certificate(tmp_path: Path) -> tuple[str, Path, str]:
    """An app certificate whose notAfter passed a day ago: PEM, key file, SHA-1 thumbprint."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graph-alert-receiver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_file = tmp_path / "expired.key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_file,
        cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra's thumbprint
    )


def test_wrong_secret_expired_secret_expired_certificate_unknown_tenant_and_client(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator()
    wrong = {**tenant_entry(sim.tenant, "wrong-secret"), "client_secret": "not-the-secret-42"}
    stale_secret = "an-expired-secret-value-1234"
    expired: SimTenant = sim.control.add_tenant(
        {"apps": [{"secret": stale_secret, "secretExpiresAt": "2020-01-31T00:00:00Z"}]}
    )
    cert_pem, key_file, thumbprint = _expired_certificate(tmp_path)
    old_cert: SimTenant = sim.control.add_tenant({"apps": [{"certificatePem": cert_pem}]})
    ghost = {
        **tenant_entry(sim.tenant, "ghost"),
        "tenant_id": "99999999-9999-4999-8999-999999999999",
    }
    other: SimTenant = sim.control.add_tenant({"apps": [{"credential": "secret"}]})
    stranger = {
        **tenant_entry(other, "stranger"),
        "client_id": "88888888-8888-4888-8888-888888888888",
    }
    tenants = [
        wrong,
        {**tenant_entry(expired, "old-secret"), "client_secret": stale_secret},
        {
            "name": "old-cert",
            "tenant_id": old_cert.tenant_id,
            "client_id": old_cert.app.client_id,
            "certificate": {"private_key_file": str(key_file), "thumbprint": thumbprint},
        },
        ghost,
        stranger,
    ]
    code, out, err = _check(write_config, _data(sim, tenants), capsys)
    assert code == 1, err
    credentials = _lines(out, "credentials")
    assert len(credentials) == 5, out + err
    assert len(credentials) == 5 and all(c.split()[0] == "FAIL" for c in credentials)
    expected = [
        (
            "wrong client secret: Entra ID knows no such secret for this app (AADSTS7000215)",
            "fix: Copy the secret's Value (not its Secret ID)",
        ),
        ("the client secret has expired (AADSTS7000222)", "fix: Create a new client secret"),
        (
            "the certificate has expired (or is not valid yet) (AADSTS1000502)",
            "fix: Create a new certificate, upload it",
        ),
        (
            "the tenant does not exist (AADSTS90002)",
            "fix: Set tenant_id to the Directory (tenant) ID",
        ),
        (
            "no application with this client_id in this tenant (AADSTS700016)",
            "fix: Check client_id against the app registration's Application (client) ID",
        ),
    ]
    for line, (what, fix) in zip(credentials, expected, strict=True):
        assert what in line and fix in line
    assert "not-the-secret-42" not in out + err and stale_secret not in out + err
    assert out.strip().endswith("0 of 5 tenant(s) ready")


def test_unknown_tenant_argument_is_refused(
    simulator: SimulatorHandle, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _check(
        write_config,
        _data(simulator, [tenant_entry(simulator.tenant, "contoso")]),
        capsys,
        "nosuch",
    )
    assert code == 2 and out == ""
    assert "no tenant 'nosuch' in the settings (configured: contoso)" in err


# --- push ----------------------------------------------------------------------------------


def test_push_endpoint_handshake_checked_at_its_public_address(
    simulator: SimulatorHandle,
    write_config: WriteConfig,
    loopback_receiver: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, wrong = loopback_receiver(), loopback_receiver(handshake="wrong")
    subscription = [{"resource": "security/alerts?$filter=status eq 'newAlert'"}]
    data = _data(simulator, [tenant_entry(simulator.tenant, "contoso", subscriptions=subscription)])
    data["web"] = {"public_url": good.url, "allow_http": True}
    code, out, _ = _check(write_config, data, capsys)
    [push] = [line for line in _lines(out, "push") if good.url in line or "resolves" in line]
    assert push.split()[0] == "warn"  # http: allowed for the simulator only
    assert "127.0.0.1 resolves to 127.0.0.1; answered the validation handshake in" in push
    handshakes = good.handshakes()
    assert len(handshakes) == 2  # the notification and the lifecycle URL, once each
    assert {h.path for h in handshakes} == {"/webhooks/graph", "/webhooks/graph/lifecycle"}
    assert code == 0

    data["web"] = {"public_url": wrong.url, "allow_http": True}
    code, out, _ = _check(write_config, data, capsys)
    assert code == 1
    [push] = _lines(out, "push")
    assert "answered 200, but not with the validation token" in push
    assert "fix: Route the path to the receiver's web role, which echoes the token" in push

    data["web"] = {"public_url": "http://receiver.invalid:8080", "allow_http": True}
    code, out, _ = _check(write_config, data, capsys)
    assert code == 1
    [push] = _lines(out, "push")
    assert "the name receiver.invalid does not resolve" in push
    assert "fix: Publish a DNS record for receiver.invalid" in push

    data["web"] = {"public_url": "https://127.0.0.1:9"}
    data["tenants"][0]["subscriptions"] = [
        {
            "resource": "security/alerts?$filter=status eq 'newAlert'",
            "notification_url": "http://127.0.0.1:9/hook",
        }
    ]
    code, out, _ = _check(write_config, data, capsys)
    [push] = _lines(out, "push")
    assert "http://127.0.0.1:9/hook: not https; Graph only posts to HTTPS" in push
    assert code == 1


# --- automation, /status, the short form at start -----------------------------------------


def test_json_and_the_result_on_the_status_page(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(roles=tuple(r for r in ALL_ROLES if not r.startswith("SecurityAlert.")))
    data = _data(sim, [tenant_entry(sim.tenant, "contoso")], redis_url=redis_url)
    data["redis"]["key_prefix"] = "{tenantcheck}"
    code, out, _ = _check(write_config, data, capsys, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    [tenant] = report["tenants"]
    assert (tenant["name"], tenant["tenant_id"], tenant["ok"]) == (
        "contoso",
        sim.tenant.tenant_id,
        False,
    )
    by_check = {v["check"]: v for v in tenant["verdicts"]}
    assert by_check["credentials"]["status"] == "ok"
    assert by_check["permissions"]["status"] == "fail"
    assert by_check["alerts_v2"]["detail"].startswith(
        "GET security/alerts_v2?$top=1: 403 Forbidden: Missing application roles."
    )
    assert ALERT_READ in by_check["permissions"]["fix"]

    import asyncio

    async def health() -> Any:
        redis = make_redis(settings_from_mapping(data).redis)
        try:
            return await gather(settings_from_mapping(data), redis)
        finally:
            await redis.aclose()

    state = asyncio.run(health())
    [check] = state.tenant_checks
    assert (check.tenant, check.ok, check.source) == ("contoso", False, "cli")
    assert check.failures[0].startswith(f"permissions: missing {ALERT_READ} for poll alerts_v2")
    assert f"tenant contoso cannot work: permissions: missing {ALERT_READ}" in " ".join(
        state.problems
    )


async def test_start_of_a_role_warns_once_per_tenant_that_cannot_work(
    make_simulator: Callable[..., SimulatorHandle], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = make_simulator()
    lacking = sim.control.add_tenant({"apps": [{"credential": "secret", "roles": [ALERT_READ]}]})
    poll = {"poll": {"alerts_v2": True, "incidents": True}}
    data = _data(
        sim,
        [
            {**tenant_entry(sim.tenant, "contoso"), **poll},
            {**tenant_entry(lacking, "fabrikam"), **poll},
        ],
        redis_url=redis_url,
    )
    data["redis"]["key_prefix"] = "{startcheck}"
    settings = settings_from_mapping(data)
    redis = make_redis(settings.redis)
    graph = client_for(settings, redis)
    try:
        with caplog.at_level(logging.WARNING, logger="receiver.graph.probes"):
            await startup_check(settings, redis, graph, "serve")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith(
            f"tenant fabrikam cannot work: permissions: missing {INCIDENT_READ} for poll incidents"
        )
        assert "(all problems: receiver tenants check fabrikam)" in warnings[0]
        state = await gather(settings, redis)
        assert [(c.tenant, c.ok, c.source) for c in state.tenant_checks] == [
            ("contoso", True, "serve"),
            ("fabrikam", False, "serve"),
        ]
    finally:
        await graph.aclose()
        await redis.aclose()


# --- the pure parts -----------------------------------------------------------------------


def test_needs_follow_the_configuration() -> None:
    data = base_settings_data()
    data["tenants"][0].update(
        poll={"alerts_v2": True, "incidents": True},
        secure_score={"enabled": True},
        subscriptions=[
            {"resource": "security/alerts?$filter=x eq 1"},
            {"resource": "users"},
            {"resource": "me/events"},
        ],
    )
    data["actions"] = {"enabled": True, "signing_keys": [{"id": "k", "key": SIGNING_KEY}]}
    settings = settings_from_mapping(data)
    wanted, unknown = needs(settings, settings.tenants[0])
    assert [(n.feature, n.add) for n in wanted] == [
        ("poll alerts_v2", ALERT_READ),
        ("poll incidents", INCIDENT_READ),
        ("alert updates (action links)", ALERT_WRITE),
        ("Secure Score", EVENTS_READ),
        ("subscription on security/alerts?$filter=x eq 1", EVENTS_WRITE),
        ("subscription on users", "User.Read.All"),
    ]
    assert unknown == ["me/events"]
    # A ReadWrite role to add covers the Read one; a granted ReadWrite meets a Read need.
    missing, add = missing_roles(wanted, [EVENTS_WRITE, "User.Read.All"])
    assert [n.feature for n in missing] == [
        "poll alerts_v2",
        "poll incidents",
        "alert updates (action links)",
    ]
    assert add == [INCIDENT_READ, ALERT_WRITE]


def test_claims_and_unexplained_codes() -> None:
    assert token_claims("not-a-jwt") == {} and token_claims("a.!!!.c") == {}
    verdict = credential_failure("Entra ID refused the token request: x AADSTS123: text", [123])
    assert verdict.detail.startswith("Entra ID refused the token (AADSTS123): ")
    assert verdict.fix == "Look the code up at https://login.microsoftonline.com/error?code=123."
    # Entra's other wording of an expired certificate, under 700027.
    expired = credential_failure("AADSTS700027: ... [Reason - The key used is expired.", [700027])
    assert "(AADSTS1000502)" in expired.detail

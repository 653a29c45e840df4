"""What `receiver tenants check` decides, without I/O: which application permissions a
tenant's configured features need, what Entra's AADSTS codes mean in words, and the verdicts.

Kept pure so each sentence is tested on its own; the live probes that feed it (a token from
Entra, one small GET per feature, the validation handshake at the public URL) are in
``receiver.graph.probes``.

Reading the token's ``roles`` claim: the payload of the access token is decoded without
checking its signature. That is safe here because it is our own token, just received from
Entra over TLS, read only to tell the user what was granted; nothing is authorised on it
(Graph checks the signature of every request).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from receiver.config.settings import Settings, TenantSettings

__all__ = [
    "Need",
    "TenantReport",
    "Verdict",
    "credential_failure",
    "missing_roles",
    "needs",
    "permission_verdict",
    "render",
    "token_claims",
]

Status = Literal["ok", "warn", "fail", "skip"]

# Graph's application permissions, as the portal lists them.
ALERT_READ, ALERT_WRITE = "SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"
INCIDENT_READ, INCIDENT_WRITE = "SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"
EVENTS_READ, EVENTS_WRITE = "SecurityEvents.Read.All", "SecurityEvents.ReadWrite.All"
MAIL_SEND = "Mail.Send"
CONSENT = (
    "In the app registration's API permissions, add the Microsoft Graph application "
    'permission{s} {roles}, then have an administrator click "Grant admin consent" '
    "for the tenant."
)


@dataclass(frozen=True, slots=True)
class Need:
    """A configured feature and the roles any one of which lets it work (``add``: the least
    of them, the one to ask for)."""

    feature: str
    accepted: frozenset[str]
    add: str


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(slots=True)
class TenantReport:
    name: str
    tenant_id: str
    verdicts: list[Verdict] = field(default_factory=list)
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return all(v.status != "fail" for v in self.verdicts)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant_id": self.tenant_id,
            "ok": self.ok,
            "at": self.at,
            "verdicts": [asdict(v) for v in self.verdicts],
        }


def _read(feature: str, read: str, write: str) -> Need:
    return Need(feature, frozenset({read, write}), read)


def _subscription_need(resource: str) -> Need | None:
    path = resource.strip().lstrip("/").split("?", 1)[0].lower()
    feature = f"subscription on {resource}"
    if path.startswith("security/alerts_v2"):
        return _read(feature, ALERT_READ, ALERT_WRITE)
    if path.startswith("security/incidents"):
        return _read(feature, INCIDENT_READ, INCIDENT_WRITE)
    if path.startswith("security/alerts"):  # Graph's subscription table: ReadWrite only
        return Need(feature, frozenset({EVENTS_WRITE}), EVENTS_WRITE)
    for prefix, read in (("users", "User.Read.All"), ("groups", "Group.Read.All")):
        if path.startswith(prefix):
            return Need(
                feature,
                frozenset(
                    {
                        read,
                        read.replace(".Read.", ".ReadWrite."),
                        "Directory.Read.All",
                        "Directory.ReadWrite.All",
                    }
                ),
                read,
            )
    return None


def needs(settings: Settings, tenant: TenantSettings) -> tuple[list[Need], list[str]]:
    """The permissions ``tenant``'s configured features need, and the subscription resources
    whose permission this module cannot tell."""
    out: list[Need] = []
    unknown: list[str] = []
    if tenant.poll.alerts_v2:
        out.append(_read("poll alerts_v2", ALERT_READ, ALERT_WRITE))
    if tenant.poll.incidents:
        out.append(_read("poll incidents", INCIDENT_READ, INCIDENT_WRITE))
    writeback = any(getattr(s, "writeback", False) for s in settings.sinks)
    if settings.actions.enabled or writeback:
        what = " and ".join(
            w
            for w, on in (
                ("action links", settings.actions.enabled),
                ("ticket write-back", writeback),
            )
            if on
        )
        out.append(Need(f"alert updates ({what})", frozenset({ALERT_WRITE}), ALERT_WRITE))
    if tenant.secure_score.enabled:
        out.append(_read("Secure Score", EVENTS_READ, EVENTS_WRITE))
    for sink in settings.sinks:
        if (
            getattr(sink, "type", "") == "email"
            and getattr(sink, "transport", "") == "graph"
            and getattr(sink, "tenant", None) in (tenant.name, tenant.tenant_id)
        ):
            out.append(
                Need(f"email sink {sink.name} (Graph sendMail)", frozenset({MAIL_SEND}), MAIL_SEND)
            )
    for spec in tenant.subscriptions:
        need = _subscription_need(spec.resource)
        if need is None:
            unknown.append(spec.resource)
        else:
            out.append(need)
    return out, unknown


def token_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (see the module docstring for why that is fine);
    {} when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def missing_roles(wanted: Iterable[Need], roles: Iterable[str]) -> tuple[list[Need], list[str]]:
    """The needs no granted role meets, and the least set of roles to add for all of them (a
    ReadWrite role to add covers the Read one of the same API)."""
    granted = set(roles)
    missing = [n for n in wanted if not n.accepted & granted]
    add: list[str] = []
    for need in missing:
        if need.add not in add:
            add.append(need.add)
    add = [
        r
        for r in add
        if r.replace(".Read.", ".ReadWrite.") == r or r.replace(".Read.", ".ReadWrite.") not in add
    ]
    return missing, add


def consent_fix(roles: Sequence[str]) -> str:
    return CONSENT.format(s="s" if len(roles) > 1 else "", roles=", ".join(roles))


def permission_verdict(
    wanted: Sequence[Need], unknown: Sequence[str], roles: Sequence[str]
) -> list[Verdict]:
    """The permissions line: every configured feature against the token's roles."""
    out: list[Verdict] = []
    missing, add = missing_roles(wanted, roles)
    have = (
        ", ".join(sorted(roles))
        if roles
        else ("no roles at all: no application permission has admin consent")
    )
    if not wanted and not unknown:
        out.append(
            Verdict(
                "permissions",
                "warn",
                "nothing is configured for this tenant (no "
                "polling, subscription, Secure Score or Graph mail)",
                "Turn on poll.alerts_v2 and poll.incidents for the tenant.",
            )
        )
    elif missing:
        lacking = "; ".join(f"{n.add} for {n.feature}" for n in missing)
        out.append(
            Verdict(
                "permissions", "fail", f"missing {lacking}; the token has {have}", consent_fix(add)
            )
        )
    elif wanted:
        granted = set(roles)
        out.append(
            Verdict(
                "permissions",
                "ok",
                ", ".join(f"{sorted(n.accepted & granted)[0]} ({n.feature})" for n in wanted),
            )
        )
    for resource in unknown:
        out.append(
            Verdict(
                "permissions",
                "warn",
                f"cannot tell which permission a subscription on {resource} needs",
                "Look the resource up in Graph's change notifications documentation "
                "and check that the app has that application permission.",
            )
        )
    return out


# --- Entra's answers, in words ------------------------------------------------------------

_AADSTS: dict[int, tuple[str, str]] = {
    7000215: (
        "wrong client secret: Entra ID knows no such secret for this app",
        "Copy the secret's Value (not its Secret ID) from the app registration's "
        "Certificates & secrets into client_secret, or create a new secret.",
    ),
    7000222: (
        "the client secret has expired",
        "Create a new client secret (or, better, upload a certificate) under the app "
        "registration's Certificates & secrets and put it in the config.",
    ),
    700016: (
        "no application with this client_id in this tenant",
        "Check client_id against the app registration's Application (client) ID and "
        "tenant_id against its Directory (tenant) ID; an app registered in another tenant "
        "needs an administrator of this one to consent to it first.",
    ),
    7000229: (
        "the app has no service principal (enterprise application) in this tenant",
        "Have an administrator of this tenant grant admin consent to the app.",
    ),
    90002: (
        "the tenant does not exist",
        "Set tenant_id to the Directory (tenant) ID on the app registration's Overview page "
        "(and graph.authority_host to your cloud's sign-in host, if not the public cloud).",
    ),
    700027: (
        "the certificate is not registered on the app, or the private key does not belong to it",
        "Upload the certificate's public part (.crt) under the app registration's "
        "Certificates & secrets and set thumbprint to its SHA-1 thumbprint, with "
        "private_key_file the key of that certificate.",
    ),
    1000502: (
        "the certificate has expired (or is not valid yet)",
        "Create a new certificate, upload it under the app registration's Certificates & "
        "secrets, and point private_key_file and thumbprint at it.",
    ),
    700024: (
        "the signed client assertion is outside its valid time: this machine's clock is off",
        "Synchronise this machine's clock (NTP) and run the check again.",
    ),
    7000218: (
        "no credential reached Entra ID",
        "Give the tenant a client_secret (or client_secret_file / client_secret_env) "
        "or a certificate.",
    ),
    90033: ("Entra ID is temporarily unavailable", "Run the check again in a minute."),
}
for _code in (700021, 700023, 50027):
    _AADSTS[_code] = (
        "Entra ID refused the signed client assertion",
        "Check that private_key_file, thumbprint and client_id all belong to the "
        "same app registration.",
    )


def credential_failure(
    message: str, codes: Sequence[int], *, tenant_found: bool | None = None
) -> Verdict:
    """The credentials line for a token that could not be had. ``message`` is the product's
    redacted error text; ``codes`` Entra's AADSTS codes; ``tenant_found`` False when the
    tenant's discovery document said the tenant does not exist."""
    code = codes[0] if codes else (90002 if tenant_found is False else None)
    if code == 700027 and "expired" in message.lower():  # Entra's "The key used is expired"
        code = 1000502
    if code is not None and code in _AADSTS:
        what, fix = _AADSTS[code]
        return Verdict("credentials", "fail", f"{what} (AADSTS{code})", fix)
    if code is not None:
        return Verdict(
            "credentials",
            "fail",
            f"Entra ID refused the token (AADSTS{code}): {message}",
            f"Look the code up at https://login.microsoftonline.com/error?code={code}.",
        )
    lowered = message.lower()
    if "cannot read the certificate" in lowered:
        return Verdict(
            "credentials",
            "fail",
            message,
            "Make certificate.private_key_file readable by the receiver's user.",
        )
    if "cannot reach entra id" in lowered:
        return Verdict(
            "credentials",
            "fail",
            message,
            "Allow outbound HTTPS to the sign-in host (proxy, firewall) and run the check again.",
        )
    if "cannot set up the msal client" in lowered:
        return Verdict(
            "credentials",
            "fail",
            message,
            "certificate.private_key_file must be the PEM private key of the "
            "certificate (with certificate.passphrase when it is encrypted).",
        )
    return Verdict(
        "credentials", "fail", message, "Fix what the message says and run the check again."
    )


def credential_ok(claims: dict[str, Any]) -> Verdict:
    how = {"1": "a client secret", "2": "a certificate"}.get(
        str(claims.get("appidacr", "")), "the configured credential"
    )
    return Verdict("credentials", "ok", f"token obtained with {how}")


# --- text output ---------------------------------------------------------------------------

_LABEL = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def render(reports: Sequence[TenantReport]) -> str:
    """The terminal form: per tenant, one line per verdict, the fix under each failure."""
    lines: list[str] = []
    width = max((len(v.check) for r in reports for v in r.verdicts), default=10)
    for report in reports:
        lines.append(f"{report.name} ({report.tenant_id})")
        for v in report.verdicts:
            lines.append(f"  {_LABEL[v.status]:<4}  {v.check:<{width}}  {v.detail}")
            if v.fix and v.status in ("fail", "warn"):
                lines.append(f"        {'':<{width}}  fix: {v.fix}")
        failed = len(report.failures)
        lines.append(
            f"  => {report.name}: "
            + (
                "ready"
                if report.ok
                else f"cannot work ({failed} problem{'s' if failed > 1 else ''})"
            )
        )
        lines.append("")
    ready = sum(1 for r in reports if r.ok)
    lines.append(f"{ready} of {len(reports)} tenant(s) ready")
    return "\n".join(lines)

"""Load tenants and app registrations from a YAML or JSON seed file (`--seed FILE`).

tenants:
  - tenantId: 11111111-2222-3333-4444-555555555555   # optional, generated if absent
    displayName: Fabrikam
    domain: fabrikam.onmicrosoft.com                 # optional
    apps:
      - clientId: 66666666-7777-8888-9999-000000000000
        displayName: alert receiver
        secret: a-simulator-secret                   # and/or
        certificatePath: certs/app.pem               # or certificatePem: "-----BEGIN..."
        roles: [SecurityEvents.ReadWrite.All, SecurityAlert.Read.All]   # default: all
        secretExpiresAt: 2026-01-31T00:00:00Z        # optional; or secretExpired: true

`roles: []` is an app whose permissions were never granted admin consent: its tokens carry
no `roles` claim and Graph answers 403. A secret past `secretExpiresAt` (virtual clock) gets
AADSTS7000222; a certificate outside its own notBefore/notAfter gets AADSTS1000502.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from receiver.simulator.clock import parse_datetime
from receiver.simulator.config import AppSeed, TenantSeed

# `secretExpired: true`: a secret that expired long before any virtual "now".
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class SeedError(ValueError):
    """The seed file is not what this module documents."""


def _app(raw: Any, base: Path, where: str) -> AppSeed:
    if not isinstance(raw, dict):
        raise SeedError(f"{where}: an app must be a mapping")
    cert_pem = raw.get("certificatePem")
    if raw.get("certificatePath"):
        cert_pem = (base / str(raw["certificatePath"])).read_text()
    roles = raw.get("roles")
    if roles is not None and not (
        isinstance(roles, list) and all(isinstance(r, str) for r in roles)
    ):
        raise SeedError(f"{where}.roles: a list of role names")
    if not raw.get("secret") and not cert_pem:
        raise SeedError(f"{where}: give a secret, certificatePem or certificatePath")
    return AppSeed(
        client_id=raw.get("clientId"),
        display_name=str(raw.get("displayName", "Graph alert receiver")),
        secret=raw.get("secret"),
        certificate_pem=cert_pem,
        roles=tuple(roles) if roles is not None else None,
        secret_expires_at=_secret_expiry(raw, where),
    )


def _secret_expiry(raw: dict[str, Any], where: str) -> dt.datetime | None:
    if raw.get("secretExpired") is True:
        return LONG_AGO
    value = raw.get("secretExpiresAt")
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # YAML reads an unquoted timestamp as a datetime
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        return parse_datetime(str(value))
    except ValueError:
        raise SeedError(
            f"{where}.secretExpiresAt: an ISO 8601 time, e.g. 2026-01-31T00:00:00Z"
        ) from None


def load_seed(path: Path) -> tuple[TenantSeed, ...]:
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("tenants"), list):
        raise SeedError(f"{path}: expected a mapping with a 'tenants' list")
    seeds = []
    for i, raw in enumerate(data["tenants"]):
        where = f"{path}: tenants[{i}]"
        if not isinstance(raw, dict):
            raise SeedError(f"{where}: a tenant must be a mapping")
        apps = raw.get("apps") or []
        if not isinstance(apps, list):
            raise SeedError(f"{where}.apps: a list")
        seeds.append(
            TenantSeed(
                tenant_id=raw.get("tenantId"),
                display_name=str(raw.get("displayName", "Contoso")),
                domain=raw.get("domain"),
                apps=tuple(_app(a, path.parent, f"{where}.apps[{j}]") for j, a in enumerate(apps)),
            )
        )
    return tuple(seeds)

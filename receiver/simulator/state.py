"""Tenants, app registrations and each tenant's Graph data, kept in memory.

Everything here is mutated on the server's event loop only, so it needs no locks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from receiver.simulator.clock import iso
from receiver.simulator.config import AppSeed, TenantSeed
from receiver.simulator.tls import certificate_thumbprints

ALL_ROLES: tuple[str, ...] = (
    "SecurityEvents.Read.All",
    "SecurityEvents.ReadWrite.All",
    "SecurityAlert.Read.All",
    "SecurityAlert.ReadWrite.All",
    "SecurityIncident.Read.All",
    "SecurityIncident.ReadWrite.All",
    "Mail.Send",
    "User.Read.All",
)

# The demo tenant printed by `receiver simulator`. A simulator-only credential, never a secret.
DEMO_TENANT_ID = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"
DEMO_TENANT_NAME = "Contoso (simulated)"
DEMO_CLIENT_ID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
DEMO_CLIENT_SECRET = "sim-demo-secret~not-a-real-credential"  # noqa: S105


@dataclass
class RegisteredCertificate:
    pem: str
    thumbprint_sha1: str
    thumbprint_sha256: str
    public_key: CertificatePublicKeyTypes
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def from_pem(cls, pem: str) -> RegisteredCertificate:
        cert = x509.load_pem_x509_certificate(pem.encode())
        sha1, sha256 = certificate_thumbprints(pem)
        return cls(
            pem=pem,
            thumbprint_sha1=sha1,
            thumbprint_sha256=sha256,
            public_key=cert.public_key(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )


@dataclass
class App:
    client_id: str
    display_name: str
    secrets: list[str]
    certificates: list[RegisteredCertificate]
    roles: tuple[str, ...]
    service_principal_id: str
    secret_expires_at: dt.datetime | None = None  # virtual clock; None: the secrets never expire

    def describe(self, *, with_secrets: bool = True) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "displayName": self.display_name,
            "servicePrincipalId": self.service_principal_id,
            "roles": list(self.roles),
            "secrets": list(self.secrets) if with_secrets else len(self.secrets),
            "certificates": [
                {"thumbprint": c.thumbprint_sha1.upper(), "thumbprintSha256": c.thumbprint_sha256}
                for c in self.certificates
            ],
        }


@dataclass
class Subscription:
    id: str
    tenant_id: str
    application_id: str
    creator_id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: dt.datetime
    latest_supported_tls_version: str = "v1_2"
    notification_url_app_id: str | None = None
    include_resource_data: bool = False
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None

    @property
    def change_types(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.change_type.split(","))

    def to_json(self, *, include_client_state: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state if include_client_state else None,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": iso(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": self.latest_supported_tls_version,
            "encryptionCertificate": self.encryption_certificate,
            "encryptionCertificateId": self.encryption_certificate_id,
            "notificationUrlAppId": self.notification_url_app_id,
        }


@dataclass
class TenantData:
    """One tenant's Graph data; insertion-ordered dicts keep listing order stable."""

    legacy_alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts_v2: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    secure_scores: list[dict[str, Any]] = field(default_factory=list)  # newest first
    control_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    mails: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Tenant:
    tenant_id: str
    display_name: str
    domain: str
    apps: dict[str, App] = field(default_factory=dict)
    data: TenantData = field(default_factory=TenantData)

    def describe(self, *, with_secrets: bool = True) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "domain": self.domain,
            "apps": [a.describe(with_secrets=with_secrets) for a in self.apps.values()],
        }


def demo_seed() -> TenantSeed:
    return TenantSeed(
        tenant_id=DEMO_TENANT_ID,
        display_name=DEMO_TENANT_NAME,
        domain="contoso-sim.onmicrosoft.com",
        apps=(AppSeed(client_id=DEMO_CLIENT_ID, secret=DEMO_CLIENT_SECRET),),
    )


class Directory:
    """Tenants by id (and by domain), each with its app registrations."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self._by_domain: dict[str, Tenant] = {}

    def find(self, tenant: str) -> Tenant | None:
        key = tenant.lower()
        return self.tenants.get(key) or self._by_domain.get(key)

    def add_tenant(self, seed: TenantSeed) -> Tenant:
        tenant_id = (seed.tenant_id or str(uuid.uuid4())).lower()
        uuid.UUID(tenant_id)  # raises ValueError for anything but a GUID
        if tenant_id in self.tenants:
            raise ValueError(f"tenant {tenant_id} already exists")
        domain = (seed.domain or f"tenant-{tenant_id[:8]}.onmicrosoft.com").lower()
        tenant = Tenant(tenant_id=tenant_id, display_name=seed.display_name, domain=domain)
        self.tenants[tenant_id] = tenant
        self._by_domain[domain] = tenant
        for app_seed in seed.apps:
            self.add_app(tenant, app_seed)
        return tenant

    def add_app(self, tenant: Tenant, seed: AppSeed) -> App:
        client_id = (seed.client_id or str(uuid.uuid4())).lower()
        uuid.UUID(client_id)
        if client_id in tenant.apps:
            raise ValueError(f"app {client_id} already exists in tenant {tenant.tenant_id}")
        certificates = (
            [RegisteredCertificate.from_pem(seed.certificate_pem)] if (seed.certificate_pem) else []
        )
        if not seed.secret and not certificates:
            raise ValueError(f"app {client_id}: give a secret or a certificate")
        roles = ALL_ROLES if seed.roles is None else tuple(seed.roles)
        app = App(
            client_id=client_id,
            display_name=seed.display_name,
            secrets=[seed.secret] if seed.secret else [],
            certificates=certificates,
            roles=roles,
            service_principal_id=str(uuid.uuid5(uuid.UUID(tenant.tenant_id), client_id)),
            secret_expires_at=seed.secret_expires_at,
        )
        tenant.apps[client_id] = app
        return app

    def clear(self) -> None:
        self.tenants.clear()
        self._by_domain.clear()

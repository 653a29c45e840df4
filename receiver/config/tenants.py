"""The tenant sections: each tenant's credential, subscriptions, polling and Secure Score
watch, how Graph is reached (the ``graph`` section), and the one tenant lookup."""

from __future__ import annotations

import datetime as dt
import typing
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator

from receiver.config.types import FilePath, Guid, HttpUrl, Model, Name, Secret

# Graph's documented maximum subscription lifetime for security alerts (minutes).
SECURITY_ALERT_MAX_LIFETIME_MIN = 43_200
MIN_LIFETIME_MIN = 45
# concepts/alertsv1-alertsv2-migration.md: the legacy /security/alerts API stops returning data.
LEGACY_ALERTS_RETIRED = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)


class GraphSettings(Model):
    authority_host: HttpUrl = "https://login.microsoftonline.com"
    graph_url: HttpUrl = "https://graph.microsoft.com/v1.0"
    # CA bundle to verify Graph and Entra with (the simulator's test CA); None: system store.
    ca_bundle: FilePath | None = None
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_retries: int = Field(5, ge=0, le=20)
    # Graph's documented limit on /security alerts: 150 requests per minute per app per tenant.
    rate_limit_per_minute: int = Field(150, ge=1, le=100_000)
    # The limiter's sliding window (the limit above counts per window; Graph's is a minute).
    rate_limit_window_s: float = Field(60.0, gt=0, le=3600)
    # Cap on the total time one call spends waiting between retries (backoff, Retry-After).
    max_retry_wait_s: float = Field(120.0, ge=0, le=3600)
    # Tenants worked on at once by a reconcile (one deployment may serve hundreds).
    tenant_concurrency: int = Field(16, ge=1, le=1024)
    # Reads of one tenant asked together go to Graph as one JSON batch of at most this many
    # (Graph's limit is 20); 1 sends each read on its own (receiver.graph.batch).
    read_batch_size: int = Field(20, ge=1, le=20)


class CertificateCredential(Model):
    private_key_file: FilePath
    thumbprint: str = Field(
        pattern=r"^[0-9A-Fa-f]{40}$",
        description="SHA-1 thumbprint of the certificate, 40 hex digits",
    )
    passphrase: Secret | None = None
    public_certificate_file: FilePath | None = None


def _bare_resource(resource: str) -> str:
    """A subscription resource as a path: no surrounding '/' or blanks, no query, lowercase."""
    return resource.strip().lstrip("/").split("?", 1)[0].rstrip("/").lower()


def is_legacy_alerts(resource: str) -> bool:
    """Whether a subscription resource is on the legacy ``security/alerts`` API."""
    bare = _bare_resource(resource)
    return bare == "security/alerts" or bare.startswith("security/alerts/")


class SubscriptionSpec(Model):
    # No default: Graph documents change notifications for security only on the legacy
    # alerts API, retired on 2026-10-15; a subscription is what a user asks for by name.
    resource: str
    change_types: list[Literal["created", "updated", "deleted"]] = Field(
        default_factory=lambda: ["created", "updated"],  # type: ignore[arg-type]
        min_length=1,
    )
    lifetime_minutes: int = Field(
        SECURITY_ALERT_MAX_LIFETIME_MIN - 60,
        ge=MIN_LIFETIME_MIN,
        le=SECURITY_ALERT_MAX_LIFETIME_MIN,
    )
    notification_url: HttpUrl | None = None
    lifecycle_url: HttpUrl | None = None
    # A subscription that delivers nothing for this long while the poller finds changes in
    # the same tenant is reported as silent (`receiver status`, /status, a metric).
    silent_after_s: float = Field(3600.0, ge=60, le=30 * 86_400)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        bare = _bare_resource(value)
        if bare == "security/alerts" and "$filter=" not in value:
            raise ValueError(
                "Graph rejects an unfiltered 'security/alerts' subscription as too wide: "
                "add a $filter (e.g. security/alerts?$filter=status eq 'newAlert') "
                "or name one alert (security/alerts/{id})"
            )
        if not bare:
            raise ValueError("must name a Graph resource")
        return value.strip()


class PollSettings(Model):
    """What the poller reads: the path every real tenant depends on today (Graph pushes no
    change notifications for alerts_v2 or incidents). Graph's documented push latency for
    alerts was up to 5 minutes, so a 10-second poll is no step down."""

    alerts_v2: bool = True
    incidents: bool = True
    interval_s: float = Field(10.0, ge=5, le=86_400)
    overlap_s: float = Field(300.0, ge=0, le=86_400)
    # On the first run (no watermark yet), how far back to read.
    initial_lookback_s: float = Field(3600.0, ge=0, le=30 * 86_400)


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[str, ...] = typing.get_args(Weekday)  # Monday first, as date.weekday() counts


class SecureScoreSettings(Model):
    """The Secure Score watch of one tenant (receiver.securescore): daily, leader only."""

    enabled: bool = False
    # How often to look for a new daily score (Graph computes one a day).
    interval_s: float = Field(86_400.0, ge=60, le=7 * 86_400)
    # A day's score lower than the day before by more than this many points is a drop.
    drop_threshold: float = Field(2.0, ge=0, le=10_000)
    # A control whose score falls by more than this many points has regressed.
    control_threshold: float = Field(0.5, ge=0, le=10_000)
    # The weekly digest goes out on the first run in a week on or after this day; null: none.
    digest_weekday: Weekday | None = "monday"
    top_actions: int = Field(5, ge=0, le=50)  # improvement actions in the digest
    history_days: int = Field(30, ge=2, le=90)  # the trend's length (Graph keeps 90 days)
    # On the first run (nothing evaluated yet), how many past days to check for drops.
    initial_lookback_days: int = Field(1, ge=1, le=90)


class TenantSettings(Model):
    name: Name
    tenant_id: Guid
    client_id: Guid
    client_secret: Secret | None = None
    certificate: CertificateCredential | None = None
    subscriptions: list[SubscriptionSpec] = Field(default_factory=list)
    poll: PollSettings = Field(default_factory=PollSettings)
    secure_score: SecureScoreSettings = Field(default_factory=SecureScoreSettings)

    @model_validator(mode="after")
    def _one_credential(self) -> TenantSettings:
        if self.client_secret is None and self.certificate is None:
            raise ValueError(
                "needs a credential: client_secret (or client_secret_file / "
                "client_secret_env) or certificate"
            )
        if self.client_secret is not None and self.certificate is not None:
            raise ValueError("give either client_secret or certificate, not both")
        return self


def find_tenant_in(tenants: list[TenantSettings], name_or_id: str) -> TenantSettings | None:
    """The one tenant lookup (see :meth:`Settings.find_tenant`), over a list of tenants."""
    wanted = name_or_id.strip()
    try:
        guid = str(uuid.UUID(wanted))
    except ValueError:
        guid = None
    if guid is not None:  # a GUID names a tenant by its id
        for t in tenants:
            if t.tenant_id == guid:
                return t
    lowered = wanted.lower()
    for t in tenants:
        if t.name == lowered:
            return t
    return None

"""Settings: the one validated object of a deployment, its sections and their rules.

Built once at start by receiver.config.loader (from a YAML file and the environment, secrets
resolved) and passed down; nothing reads the environment after that.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import typing
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from receiver import clock
from receiver.config.files import ConfigError, ConfigIssue
from receiver.config.sinks import SinkSettings
from receiver.config.types import FilePath, Guid, HttpUrl, Name, Secret, as_guid
from receiver.config.values import check_url
from receiver.store.keys import DEFAULT_PREFIX, validate_prefix

__all__ = ["ConfigError", "ConfigIssue", "Settings", "SinkSettings"]

# Graph's documented maximum subscription lifetime for security alerts (minutes).
SECURITY_ALERT_MAX_LIFETIME_MIN = 43_200
MIN_LIFETIME_MIN = 45
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Graph's answer budget for a notification POST is 3 s, slow over 2,900 ms; leave 400 ms for the
# request's own reading, checking and writing.
MAX_ENQUEUE_BUDGET_MS = 2500
# concepts/alertsv1-alertsv2-migration.md: the legacy /security/alerts API stops returning data.
LEGACY_ALERTS_RETIRED = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)


# --- value types ---------------------------------------------------------------------------


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL needs a socket path")
        return value
    return check_url(value, ("redis", "rediss"))


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- sections ------------------------------------------------------------------------------


class RedisSettings(Model):
    url: RedisUrl = "redis://127.0.0.1:6379/0"
    password: Secret | None = None
    key_prefix: str = DEFAULT_PREFIX
    socket_timeout_s: float = Field(2.0, gt=0, le=60)
    connect_retries: int = Field(5, ge=0, le=100)
    # Per process (per node on a cluster). A worker's consumers may all hold one at once
    # (fetch 32 + route 16 + deliver 8 per sink + poll 32 + blocking reads, ~100 with one
    # sink); the pool refuses past its size (MaxConnectionsError: the entry waits out its
    # visibility timeout), which 64 met in the poll scale benchmark (782 refusals in 3 min).
    max_connections: int = Field(256, ge=1, le=10_000)
    # The URL names one node of a Redis Cluster; the client discovers the others. Every key
    # shares the prefix's hash tag, so pipelines and scripts stay on one slot.
    cluster: bool = False

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        problem = validate_prefix(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _cluster_url(self) -> RedisSettings:
        if self.cluster:
            parts = urlsplit(self.url)
            if parts.scheme == "unix":
                raise ValueError("cluster: true needs a redis:// or rediss:// URL, not unix://")
            if parts.path.strip("/") not in ("", "0"):
                raise ValueError("cluster: true needs database 0 (a cluster has no other)")
        return self


class DecryptionCertificate(Model):
    """A certificate whose public part was given to Graph as encryptionCertificate."""

    id: str = Field(min_length=1, max_length=128, description="the encryptionCertificateId")
    private_key_file: FilePath
    passphrase: Secret | None = None


class RichNotificationSettings(Model):
    """Graph's validationTokens and encryptedContent (rich notifications)."""

    enabled: bool = False
    # Refuse items without a valid validation token for their tenant (fail closed).
    require_validation_tokens: bool = False
    keys_url: HttpUrl = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    ca_bundle: FilePath | None = None
    # Two at once during a rotation, selected by encryptionCertificateId.
    certificates: list[DecryptionCertificate] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _coherent(self) -> RichNotificationSettings:
        if self.require_validation_tokens and not self.enabled:
            raise ValueError("require_validation_tokens needs enabled: true")
        ids = [c.id for c in self.certificates]
        if len(set(ids)) != len(ids):
            raise ValueError("certificate ids must be unique")
        for cert in self.certificates:
            if not cert.private_key_file.is_file():
                raise ValueError(f"certificate {cert.id}: private_key_file does not exist")
        return self


class WebSettings(Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # The URL Graph reaches this service at (behind a load balancer or ingress). Graph only
    # posts to HTTPS; plain HTTP is for local use with the simulator.
    public_url: HttpUrl = "https://receiver.example.com"
    allow_http: bool = False
    notification_path: str = "/webhooks/graph"
    lifecycle_path: str = "/webhooks/graph/lifecycle"
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=64 * 1024 * 1024)
    # How long an answer may wait for Redis to confirm the enqueue before it is 503. Graph gives
    # up on an answer after 3 s and counts one over 2,900 ms as slow (too many slow answers:
    # the endpoint's notifications are delayed 10 minutes, then dropped), so the budget and the
    # request's own time must fit under that.
    enqueue_budget_ms: int = Field(2000, ge=10, le=MAX_ENQUEUE_BUDGET_MS)
    # The whole request body must arrive within this long (slow-loris guard).
    body_timeout_s: float = Field(10.0, ge=0.1, le=120)
    rich_notifications: RichNotificationSettings = Field(default_factory=RichNotificationSettings)

    @model_validator(mode="after")
    def _https(self) -> WebSettings:
        if not self.allow_http and urlsplit(self.public_url).scheme != "https":
            raise ValueError(
                "public_url must be https (Graph only posts to HTTPS); "
                "set web.allow_http for local use"
            )
        for name in ("notification_path", "lifecycle_path"):
            if not getattr(self, name).startswith("/"):
                raise ValueError(f"{name} must start with '/'")
        return self

    @property
    def notification_url(self) -> str:
        return self.public_url.rstrip("/") + self.notification_path

    @property
    def lifecycle_url(self) -> str:
        return self.public_url.rstrip("/") + self.lifecycle_path


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


class CertificateCredential(Model):
    private_key_file: FilePath
    thumbprint: str = Field(
        pattern=r"^[0-9A-Fa-f]{40}$",
        description="SHA-1 thumbprint of the certificate, 40 hex digits",
    )
    passphrase: Secret | None = None
    public_certificate_file: FilePath | None = None


def is_legacy_alerts(resource: str) -> bool:
    """Whether a subscription resource is on the legacy ``security/alerts`` API."""
    bare = resource.strip().lstrip("/").split("?", 1)[0].rstrip("/").lower()
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
        bare = value.strip().lstrip("/").split("?", 1)[0].rstrip("/").lower()
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


class MetricsSettings(Model):
    """/metrics of the worker and scheduler roles (the web serves its own on its port)."""

    host: str = "127.0.0.1"
    # 0: no metrics endpoint (the default: several processes on one machine would collide);
    # deployments set it, e.g. RECEIVER_METRICS__PORT=9108.
    port: int = Field(0, ge=0, le=65535)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class AdminSettings(Model):
    """The admin server: the read-only status page (receiver/admin). Off by default."""

    host: str = "127.0.0.1"
    # 0: no admin server (the default).
    port: int = Field(0, ge=0, le=65535)
    # Required for /status when set (Authorization: Bearer, or as the HTTP Basic password so a
    # browser can prompt for it); token_file / token_env like every secret.
    token: Secret | None = None
    # How many of the latest alerts the page shows, with their timelines and card previews.
    recent_alerts: int = Field(20, ge=1, le=200)

    @model_validator(mode="after")
    def _guarded(self) -> AdminSettings:
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("token must be at least 16 characters")
        if self.port and self.token is None and not _is_loopback(self.host):
            raise ValueError(
                f"host {self.host} is reachable from other machines: set token "
                "(or token_file / token_env), or listen on 127.0.0.1"
            )
        return self


class WorkerSettings(Model):
    """The pipeline workers (fetch, route, deliver)."""

    # An entry a worker took but did not finish (it died) is taken over after this long.
    visibility_timeout_s: float = Field(60.0, ge=0.5, le=3600)
    fetch_concurrency: int = Field(64, ge=1, le=1000)
    route_concurrency: int = Field(16, ge=1, le=1000)
    deliver_concurrency: int = Field(32, ge=1, le=1000)  # per sink (Little: 320/s at 100 ms)
    max_attempts: int = Field(10, ge=1, le=1000)  # fetch/route attempts before the poison stream
    # Poll jobs (tenant, source) each worker process reads at once. A thousand tenants x 2
    # sources every 10 s at Graph's ~150 ms a call keep 30-40 in flight over all workers
    # (with the rate limiter's and Redis's round trips): 32 held one worker to 168-192
    # GETs/s, two workers did the 200. More per worker needs redis.max_connections (each
    # read may hold a connection) to stay above the sum of the worker's concurrencies.
    poll_concurrency: int = Field(32, ge=1, le=1024)
    # A poll job whose worker stopped (killed, or stalled this long) is taken over after this
    # long; a live worker keeps its job fresh every third of it.
    poll_visibility_timeout_s: float = Field(20.0, ge=0.5, le=3600)


class SchedulerSettings(Model):
    """The leader lease and the subscription supervisor's jobs."""

    lease_s: float = Field(30.0, gt=0, le=3600)
    heartbeat_s: float = Field(10.0, gt=0, le=1200)
    reconcile_interval_s: float = Field(300.0, ge=0.1, le=86_400)
    # Renew a subscription when less than this fraction of its lifetime is left ...
    renewal_fraction: float = Field(0.5, gt=0, lt=1)
    # ... give or take this fraction of its lifetime (spreads renewals of many subscriptions).
    renewal_jitter: float = Field(0.05, ge=0, lt=0.5)
    lifecycle_interval_s: float = Field(1.0, ge=0.05, le=3600)
    # A lifecycle event that fails this often is given up (logged and counted).
    lifecycle_max_attempts: int = Field(5, ge=1, le=100)
    # Failed lifecycle events are retried after this long.
    lifecycle_retry_s: float = Field(10.0, ge=0, le=3600)
    # How far back a backfill reaches when the start of a gap is unknown.
    backfill_lookback_s: float = Field(4 * 3600.0, ge=60, le=30 * 86_400)
    # Tenant sources (alerts_v2, incidents) read at once by an in-process round
    # (``Poller.poll_all``, a library call). The deployment polls through the workers instead
    # (worker.poll_concurrency each).
    poll_concurrency: int = Field(16, ge=1, le=1024)

    @model_validator(mode="after")
    def _heartbeat(self) -> SchedulerSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                "heartbeat_s must be shorter than lease_s (the lease would lapse "
                "between heartbeats)"
            )
        return self


ActionName = Literal["take", "resolve_true_positive", "resolve_false_positive"]
ACTION_NAMES: tuple[ActionName, ...] = typing.get_args(ActionName)


class SigningKey(Model):
    """One HMAC key for action links. The first of the list signs; every one verifies, so a
    key is rotated by putting the new one first and dropping the old one after the link TTL."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    key: Secret

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError(
                "must be at least 32 bytes (e.g. the output of `openssl rand -base64 48`)"
            )
        return value


class SignInSettings(Model):
    """Sign-in with Entra ID before a triage action (OIDC authorization code flow, MSAL).
    Entra redirects back to ``{base_url}{path}/signin/callback``: register that URL (type
    Web) on the app registration ``client_id``, and add a groups claim to its tokens when
    ``allowed_groups`` is set."""

    enabled: bool = False
    # The tenant people sign in to: a configured tenant's name or tenant_id, or any tenant
    # GUID. Unset: the only configured tenant.
    tenant: str | None = None
    client_id: Guid | None = None
    client_secret: Secret | None = None
    # Group object ids; a person must be in one of them. Empty: anyone of the tenant.
    allowed_groups: list[Guid] = Field(default_factory=list, max_length=100)
    session_ttl_s: int = Field(8 * 3600, ge=60, le=7 * 86_400)

    @model_validator(mode="after")
    def _complete(self) -> SignInSettings:
        if self.enabled:
            missing = [k for k in ("client_id", "client_secret") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"enabled sign-in needs {' and '.join(missing)} (the secret "
                    "as client_secret, client_secret_file or client_secret_env)"
                )
        return self

    def tenant_id_in(self, tenants: list[TenantSettings]) -> str | None:
        """The tenant id people sign in to, or None when ``tenant`` names none."""
        if self.tenant is None:
            return tenants[0].tenant_id if len(tenants) == 1 else None
        found = find_tenant_in(tenants, self.tenant)
        if found is not None:
            return found.tenant_id
        try:
            return as_guid(self.tenant)
        except ValueError:
            return None


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


class SlackInteractivitySettings(Model):
    """The Slack app's buttons (Take it, Resolve: ...): Slack posts each click to
    ``{base_url}{path}`` (the app's Interactivity Request URL), signed with the app's signing
    secret. The web role verifies and queues the click; a worker acts on it in Graph."""

    enabled: bool = False
    path: str = Field("/slack/interactivity", pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$")
    # The app's Signing Secret (Basic Information page); signing_secret_file / _env.
    signing_secret: Secret | None = None
    # Slack user id -> the UPN Graph gets as assignedTo (else the Slack name is used).
    users: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    # Only the users listed in ``users`` may act; others are told they are not allowed.
    only_listed_users: bool = False
    # Where ephemeral refusals may be posted: Slack's response_url must start with this.
    response_url_prefix: str = "https://hooks.slack.com/"
    # How far Slack's request timestamp may be from our clock (Slack's advice: 5 minutes).
    max_skew_s: int = Field(300, ge=1, le=3600)

    @model_validator(mode="after")
    def _complete(self) -> SlackInteractivitySettings:
        if self.enabled and self.signing_secret is None:
            raise ValueError(
                "enabled Slack interactivity needs signing_secret (or "
                "signing_secret_file / signing_secret_env)"
            )
        for user in self.users:
            if not re.fullmatch(r"[UW][A-Z0-9]{2,20}", user):
                raise ValueError(f"users: {user!r} is not a Slack user id (U... or W...)")
        return self


class ActionsSettings(Model):
    """Triage links in messages ("Take it", "Resolve: true positive", ...), served by the web
    role under ``path`` at ``base_url`` (default: web.public_url)."""

    enabled: bool = False
    base_url: HttpUrl | None = None
    path: str = Field("/actions", pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$")
    signing_keys: list[SigningKey] = Field(default_factory=list, max_length=8)
    link_ttl_s: int = Field(7 * 86_400, ge=60, le=90 * 86_400)
    actions: list[ActionName] = Field(
        default_factory=lambda: list(ACTION_NAMES),
        min_length=1,
    )
    sign_in: SignInSettings = Field(default_factory=SignInSettings)
    # Slack app buttons, served beside the links (needs no signing_keys of its own).
    slack: SlackInteractivitySettings = Field(default_factory=SlackInteractivitySettings)

    @model_validator(mode="after")
    def _keys(self) -> ActionsSettings:
        if self.enabled and not self.signing_keys:
            raise ValueError("enabled actions need signing_keys (id and key, key_file or key_env)")
        ids = [k.id for k in self.signing_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("signing key ids must be unique")
        return self


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(Model):
    """The whole configuration of one deployment."""

    redis: RedisSettings = Field(default_factory=RedisSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    tenants: list[TenantSettings] = Field(default_factory=list)
    sinks: list[SinkSettings] = Field(default_factory=list)
    routes_file: FilePath | None = None
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    # The config file's path, for messages.
    _source: str = PrivateAttr(default="<defaults>")
    # tenant id -> tenant, built on first use (Settings are frozen, so it never goes stale)
    _by_id: dict[str, TenantSettings] | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return self._source

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        for what, values in (
            ("tenant name", [t.name for t in self.tenants]),
            ("tenant_id", [t.tenant_id for t in self.tenants]),
            ("sink name", [s.name for s in self.sinks]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _actions_path(self) -> Settings:
        path = self.actions.path
        taken = (
            self.web.notification_path,
            self.web.lifecycle_path,
            "/healthz",
            "/readyz",
            "/metrics",
        )
        if self.actions.enabled and any(p == path or p.startswith(path + "/") for p in taken):
            raise ValueError(f"actions.path {path} would hide a web endpoint; choose another")
        return self

    @model_validator(mode="after")
    def _sign_in_tenant(self) -> Settings:
        sign_in = self.actions.sign_in
        if sign_in.enabled and sign_in.tenant_id_in(self.tenants) is None:
            raise ValueError(
                f"actions.sign_in.tenant {sign_in.tenant!r} is neither a configured tenant's "
                "name or tenant_id nor a GUID"
                if sign_in.tenant is not None
                else "actions.sign_in.tenant is required (a tenant name or GUID) unless exactly "
                "one tenant is configured"
            )
        return self

    def silent_after_s(self, tenant_id: str, resource: str) -> float:
        """The configured silence limit of a tenant's subscription on ``resource``."""
        tenant = self.tenant(tenant_id)
        want = resource.strip().lstrip("/").lower()
        for spec in tenant.subscriptions if tenant else []:
            if spec.resource.strip().lstrip("/").lower() == want:
                return spec.silent_after_s
        return SubscriptionSpec.model_fields["silent_after_s"].default  # type: ignore[no-any-return]

    def find_tenant(self, name_or_id: str) -> TenantSettings | None:
        """The tenant a person, a sink or a command names: the one lookup every place uses.

        A tenant id is a GUID: compared as one (any case, braces or ``urn:uuid:`` form, as
        :class:`uuid.UUID` reads it; the settings hold the canonical lowercase form). A name
        is compared case-insensitively: the settings only accept lowercase names, so folding
        case cannot match a second tenant, and ``--tenant Contoso`` means ``contoso``
        (securescore and Graph mail already read names that way; the others now do too).
        Ids are tried first, so a GUID always means a tenant id. Surrounding blanks are
        ignored. None when nothing matches: the caller says so in its own words."""
        return find_tenant_in(self.tenants, name_or_id)

    def tenant(self, tenant_id: str) -> TenantSettings | None:
        """The tenant with this id (a GUID from Graph, a registry record, a job), in any case;
        looked up in an index, since the poll and fetch paths ask it per job."""
        index = self._by_id
        if index is None:
            index = self._by_id = {t.tenant_id: t for t in self.tenants}
        found = index.get(tenant_id)
        if found is not None or not tenant_id:
            return found
        try:
            return index.get(str(uuid.UUID(tenant_id)))
        except ValueError:
            return None

    @property
    def allowed_tenant_ids(self) -> frozenset[str]:
        return frozenset(t.tenant_id for t in self.tenants)

    def warnings(self, now: dt.datetime | None = None) -> list[str]:
        """What is valid but will not do what the operator expects, one sentence each (printed
        by ``receiver config check`` and logged when a role starts)."""
        now = now or clock.now()
        found: list[str] = []
        for i, tenant in enumerate(self.tenants):
            for j, spec in enumerate(tenant.subscriptions):
                if is_legacy_alerts(spec.resource) and now >= LEGACY_ALERTS_RETIRED:
                    found.append(
                        f"tenants[{i}].subscriptions[{j}].resource: {spec.resource!r} is on the "
                        "legacy security/alerts API, which Microsoft retired on 2026-10-15: Graph "
                        "still creates the subscription but sends nothing. Alerts come from "
                        "polling (poll.alerts_v2, poll.incidents); keep it only to test the push "
                        "path, or for a tenant where it still delivers."
                    )
            if not (tenant.poll.alerts_v2 or tenant.poll.incidents) and not tenant.subscriptions:
                found.append(
                    f"tenants[{i}] ({tenant.name}): nothing is polled and no "
                    "subscription is kept: this tenant's alerts reach no sink"
                )
        return found

    def summary(self) -> str:
        routes = f", routes {self.routes_file}" if self.routes_file else ""
        return f"{len(self.tenants)} tenant(s), {len(self.sinks)} sink(s){routes}"

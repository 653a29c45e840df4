"""The sections of the processes: Redis, the web role (and Graph's rich notifications it
checks), the worker and scheduler roles, the admin server, metrics and logging."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from receiver.config.types import FilePath, HttpUrl, Model, Secret, repeated
from receiver.config.values import check_url
from receiver.store.keys import DEFAULT_PREFIX, validate_prefix

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Graph's answer budget for a notification POST is 3 s, slow over 2,900 ms; leave 400 ms for the
# request's own reading, checking and writing.
MAX_ENQUEUE_BUDGET_MS = 2500


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL needs a socket path")
        return value
    return check_url(value, ("redis", "rediss"))


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


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
        if repeated(c.id for c in self.certificates):
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


class LoggingSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

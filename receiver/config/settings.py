"""Settings: the one validated object of a deployment, the rules across its sections, and
its lookups (tenants, subscriptions' silence limits, warnings).

The sections live by purpose in roles.py (Redis, web, worker, scheduler, admin, metrics,
logging), tenants.py (tenants and Graph) and actions.py (triage links, sign-in, Slack
interactivity); their names are re-exported here, so every part imports them from this module.

Built once at start by receiver.config.loader (from a YAML file and the environment, secrets
resolved) and passed down; nothing reads the environment after that.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import Field, PrivateAttr, model_validator

from receiver import clock
from receiver.config.actions import (
    ACTION_NAMES,
    ActionName,
    ActionsSettings,
    SigningKey,
    SignInSettings,
    SlackInteractivitySettings,
)
from receiver.config.files import ConfigError, ConfigIssue
from receiver.config.roles import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_ENQUEUE_BUDGET_MS,
    AdminSettings,
    DecryptionCertificate,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    RedisUrl,
    RichNotificationSettings,
    SchedulerSettings,
    WebSettings,
    WorkerSettings,
)
from receiver.config.sinks import SinkSettings
from receiver.config.tenants import (
    LEGACY_ALERTS_RETIRED,
    MIN_LIFETIME_MIN,
    SECURITY_ALERT_MAX_LIFETIME_MIN,
    WEEKDAYS,
    CertificateCredential,
    GraphSettings,
    PollSettings,
    SecureScoreSettings,
    SubscriptionSpec,
    TenantSettings,
    Weekday,
    find_tenant_in,
    is_legacy_alerts,
)
from receiver.config.types import FilePath, Model, repeated

__all__ = [
    "ACTION_NAMES",
    "DEFAULT_MAX_BODY_BYTES",
    "LEGACY_ALERTS_RETIRED",
    "MAX_ENQUEUE_BUDGET_MS",
    "MIN_LIFETIME_MIN",
    "SECURITY_ALERT_MAX_LIFETIME_MIN",
    "WEEKDAYS",
    "ActionName",
    "ActionsSettings",
    "AdminSettings",
    "CertificateCredential",
    "ConfigError",
    "ConfigIssue",
    "DecryptionCertificate",
    "GraphSettings",
    "LoggingSettings",
    "MetricsSettings",
    "Model",
    "PollSettings",
    "RedisSettings",
    "RedisUrl",
    "RichNotificationSettings",
    "SchedulerSettings",
    "SecureScoreSettings",
    "Settings",
    "SignInSettings",
    "SigningKey",
    "SinkSettings",
    "SlackInteractivitySettings",
    "SubscriptionSpec",
    "TenantSettings",
    "WebSettings",
    "Weekday",
    "WorkerSettings",
    "find_tenant_in",
    "is_legacy_alerts",
]


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
            dupes = repeated(values)
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

"""The simulator as one object: settings, clock, directory, tokens, faults, notifier.

Graph and control handlers reach it as `request.app.state.sim`. Alert creation and update
live here because both the Graph API (PATCH) and the control API use them, and both must
notify subscribers the same way.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from typing import Any

from receiver.simulator import odata
from receiver.simulator.alert_payloads import AlertPayloads
from receiver.simulator.clock import Clock, iso
from receiver.simulator.config import LEGACY_ALERTS_MODES, SimulatorConfig, TenantSeed
from receiver.simulator.faults import Counters, Faults
from receiver.simulator.notifier import Notifier
from receiver.simulator.payloads import LEGACY_FEEDBACK, LEGACY_SEVERITIES, LEGACY_STATUSES
from receiver.simulator.score_payloads import ScorePayloads
from receiver.simulator.state import Directory, Subscription, Tenant, demo_seed
from receiver.simulator.throttle import Rule, Throttle
from receiver.simulator.tokens import TokenService, load_or_create_key

LEGACY_ALERT_ENUMS: dict[str, frozenset[str]] = {
    "status": frozenset(LEGACY_STATUSES),
    "severity": frozenset(LEGACY_SEVERITIES),
    "feedback": frozenset(LEGACY_FEEDBACK),
}
_ALERT_RESOURCE = re.compile(
    r"^/?security/alerts(?:/(?P<id>[^/?]+))?/?(?:\?(?P<query>.*))?$", re.IGNORECASE
)


def merge(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply `changes` to `target`: nested objects merge, everything else replaces."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


class AlertResource:
    """A parsed `security/alerts...` subscription resource."""

    def __init__(self, alert_id: str | None, filter_expr: odata.Expr | None) -> None:
        self.alert_id = alert_id
        self.filter_expr = filter_expr

    def matches(self, alert: dict[str, Any]) -> bool:
        if self.alert_id is not None:
            return bool(alert.get("id") == self.alert_id)
        return self.filter_expr is not None and odata.evaluate(self.filter_expr, alert)


def parse_alert_resource(resource: str) -> AlertResource | None:
    """None when `resource` is not a security alerts resource; `FilterError` for bad filters.

    An unfiltered `security/alerts` gives AlertResource(None, None): too wide to subscribe to.
    """
    match = _ALERT_RESOURCE.match(resource.strip())
    if not match:
        return None
    query = match.group("query") or ""
    filter_text: str | None = None
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        if name.lower() == "$filter":
            from urllib.parse import unquote_plus

            filter_text = unquote_plus(value)
    if match.group("id"):
        return AlertResource(match.group("id"), None)
    if filter_text is None:
        return AlertResource(None, None)
    expr = odata.resolve_enums(odata.parse_filter(filter_text), LEGACY_ALERT_ENUMS)
    return AlertResource(None, expr)


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.directory = Directory()
        self.tokens = TokenService(load_or_create_key(config.signing_key_path))
        self.alert_payloads, self.score_payloads = self._payloads()
        self.faults = Faults()
        self.counters = Counters()
        self.throttle = Throttle(
            [
                Rule("security", config.security_requests_per_minute, 60.0),
                Rule("secureScores", config.security_requests_per_minute, 60.0),
                Rule(
                    "secureScoreControlProfiles",
                    config.secure_score_profile_requests_per_10_minutes,
                    600.0,
                ),
                Rule("subscriptions.write", config.subscription_writes_per_20_s, 20.0),
            ]
        )
        self.throttle.enabled = config.throttle
        self.notifier = Notifier(self)
        self._resources: dict[str, AlertResource | None] = {}
        self.legacy_alerts_mode = config.legacy_alerts
        self.seed()

    def _payloads(self) -> tuple[AlertPayloads, ScorePayloads]:
        """Alert and Secure Score payload makers drawing on one generator seeded afresh: the
        same seed and the same calls give the same payloads, whatever their kind."""
        rng = random.Random(self.config.random_seed)  # noqa: S311 - reproducible test data
        return AlertPayloads(rng), ScorePayloads(rng)

    def seed(self) -> None:
        for seed in self.config.tenants if self.config.tenants is not None else (demo_seed(),):
            self.add_tenant(seed)

    def reset(self) -> None:
        self.notifier.cancel_all()
        self.notifier.clear()
        self.directory.clear()
        self.faults = Faults()
        self.counters.clear()
        self.throttle.reset()
        self.clock.reset()
        self.alert_payloads, self.score_payloads = self._payloads()
        self._resources.clear()
        self.legacy_alerts_mode = self.config.legacy_alerts
        self.seed()

    # the legacy alerts API and its retirement

    def set_legacy_alerts(self, mode: str) -> None:
        if mode not in LEGACY_ALERTS_MODES:
            raise ValueError(f"mode must be one of {', '.join(LEGACY_ALERTS_MODES)}")
        self.legacy_alerts_mode = mode

    def legacy_alerts_live(self) -> bool:
        """Whether /security/alerts serves data now: `auto` follows the virtual clock."""
        if self.legacy_alerts_mode == "auto":
            return self.clock.now() < self.config.legacy_alerts_retired_at
        return self.legacy_alerts_mode == "live"

    def add_tenant(self, seed: TenantSeed) -> Tenant:
        tenant = self.directory.add_tenant(seed)
        now = self.clock.now()
        if self.config.secure_score_days > 0:
            tenant.data.secure_scores = self.score_payloads.secure_scores(
                tenant.tenant_id, now, self.config.secure_score_days
            )
        tenant.data.control_profiles = {
            p["id"]: p for p in self.score_payloads.control_profiles(tenant.tenant_id, now)
        }
        return tenant

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.directory.find(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id}")
        return tenant

    # subscriptions

    def expire_subscriptions(self) -> int:
        now = self.clock.now()
        removed = 0
        for tenant in self.directory.tenants.values():
            subs = tenant.data.subscriptions
            for sub_id in [s.id for s in subs.values() if s.expiration <= now]:
                del subs[sub_id]
                removed += 1
        if removed:
            self.counters["subscriptions.expired"] += removed
        return removed

    def alert_resource(self, resource: str) -> AlertResource | None:
        if resource not in self._resources:
            self._resources[resource] = parse_alert_resource(resource)
        return self._resources[resource]

    def subscription_matches(self, subscription: Subscription, alert: dict[str, Any]) -> bool:
        try:
            parsed = self.alert_resource(subscription.resource)
        except odata.FilterError:
            return False
        return parsed is not None and parsed.matches(alert)

    # alerts and incidents

    def _added(
        self,
        store: dict[str, dict[str, Any]],
        item: dict[str, Any],
        overrides: dict[str, Any] | None,
        counter: str,
    ) -> dict[str, Any]:
        """A new `item`, `overrides` merged in, kept in `store` by its id and counted."""
        merge(item, overrides or {})
        store[item["id"]] = item
        self.counters[counter] += 1
        return item

    def _changed(
        self,
        store: dict[str, dict[str, Any]],
        item_id: str,
        changes: dict[str, Any],
        counter: str,
    ) -> dict[str, Any]:
        """The stored item `item_id` (KeyError if none), `changes` merged in, counted."""
        item = store[item_id]
        merge(item, changes)
        self.counters[counter] += 1
        return item

    def create_legacy_alert(
        self,
        tenant: Tenant,
        *,
        provider: str | None = None,
        severity: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        alert = self.alert_payloads.legacy_alert(
            tenant.tenant_id, tenant.domain, self.clock.now(), provider=provider, severity=severity
        )
        self._added(tenant.data.legacy_alerts, alert, overrides, "alerts.legacy.created")
        self.notifier.alert_changed(tenant.tenant_id, alert, "created")
        return alert

    def update_legacy_alert(
        self, tenant: Tenant, alert_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        alert = self._changed(tenant.data.legacy_alerts, alert_id, changes, "alerts.legacy.updated")
        alert["lastModifiedDateTime"] = iso(self.clock.now())
        self.notifier.alert_changed(tenant.tenant_id, alert, "updated")
        return alert

    def create_incident(
        self, tenant: Tenant, *, severity: str = "medium", overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        incident = self.alert_payloads.incident(
            tenant.tenant_id, self.clock.now(), severity=severity
        )
        return self._added(tenant.data.incidents, incident, overrides, "incidents.created")

    def create_v2_alert(
        self,
        tenant: Tenant,
        *,
        service_source: str | None = None,
        severity: str | None = None,
        incident_id: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if incident_id is None:
            incident_id = self.create_incident(tenant, severity=severity or "medium")["id"]
        elif incident_id not in tenant.data.incidents:
            raise KeyError(f"unknown incident {incident_id}")
        alert = self.alert_payloads.v2_alert(
            tenant.tenant_id,
            tenant.domain,
            self.clock.now(),
            incident_id,
            service_source=service_source,
            severity=severity,
        )
        self._added(tenant.data.alerts_v2, alert, overrides, "alerts.v2.created")
        self._touch_incident(tenant, incident_id)
        return alert

    def update_v2_alert(
        self, tenant: Tenant, alert_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        alert = self._changed(tenant.data.alerts_v2, alert_id, changes, "alerts.v2.updated")
        now = iso(self.clock.now())
        alert["lastUpdateDateTime"] = now
        if alert.get("status") == "resolved" and not alert.get("resolvedDateTime"):
            alert["resolvedDateTime"] = now
        self._touch_incident(tenant, str(alert.get("incidentId")))
        return alert

    def update_incident(
        self, tenant: Tenant, incident_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        incident = self._changed(tenant.data.incidents, incident_id, changes, "incidents.updated")
        self._touch_incident(tenant, incident_id)
        return incident

    def _touch_incident(self, tenant: Tenant, incident_id: str) -> None:
        incident = tenant.data.incidents.get(incident_id)
        if incident is not None:
            incident["lastUpdateDateTime"] = iso(self.clock.now())

    def incident_alerts(self, tenant: Tenant, incident_id: str) -> list[dict[str, Any]]:
        return [a for a in tenant.data.alerts_v2.values() if a.get("incidentId") == incident_id]

    def advance_clock(self, delta: dt.timedelta) -> dt.datetime:
        now = self.clock.advance(delta)
        self.expire_subscriptions()
        return now

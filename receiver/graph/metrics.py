"""Prometheus metrics of the subscription supervisor (its own CollectorRegistry by default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class SupervisorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.operations = Counter(
            "receiver_subscription_operations_total",
            "Subscription operations by kind (create, renew, reauthorize, delete, recreate, "
            "adopt_refused, orphan_delete) and outcome (ok, error, conflict)",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.seconds_to_expiry = Gauge(
            "receiver_subscription_seconds_to_expiry",
            "Seconds until each wanted subscription expires (negative or absent: missing)",
            ["tenant", "resource"],
            registry=self.registry,
        )
        self.silent_seconds = Gauge(
            "receiver_subscription_silent_seconds",
            "How long a subscription has delivered nothing while the poller found changes in "
            "its tenant (0: not silent); the retired legacy alerts API looks like this",
            ["tenant", "resource"],
            registry=self.registry,
        )
        self.lifecycle = Counter(
            "receiver_lifecycle_events_total",
            "Lifecycle events handled, by event and outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.backfills = Counter(
            "receiver_backfill_requests_total",
            "Backfill requests sent to the poller, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "receiver_subscription_reconciles_total",
            "Tenant reconciles by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "receiver_scheduler_leader",
            "1 while this process holds the scheduler lease",
            registry=self.registry,
        )
        self.fence = Gauge(
            "receiver_scheduler_fence",
            "The fencing token of this process' current lease",
            registry=self.registry,
        )

    def op(self, operation: str, outcome: str = "ok") -> None:
        self.operations.labels(operation, outcome).inc()

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

"""Prometheus metrics of the sinks (their own CollectorRegistry by default).

Labels are sink names and outcomes only: never a URL, a key or a recipient.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("ok", "retryable", "permanent")


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.deliveries = Counter(
            "receiver_sink_deliveries_total",
            "Sink deliveries by sink, type and outcome (ok, retryable, permanent)",
            ["sink", "type", "outcome"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "receiver_sink_delivery_seconds",
            "Time a sink took to deliver (or fail)",
            ["sink", "type"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.tickets = Counter(
            "receiver_sink_tickets_total",
            "Ticket operations by sink and operation (created, adopted, commented, resolved)",
            ["sink", "operation"],
            registry=self.registry,
        )

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

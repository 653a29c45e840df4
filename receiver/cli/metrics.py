"""Serving Prometheus metrics for roles that are not the web: every component keeps its own
CollectorRegistry; a role exposes all of its registries as one /metrics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class Registries(Collector):
    """Collects from several registries (so one endpoint shows a whole process)."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        self.registries = list(registries)

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def combined(registries: Iterable[CollectorRegistry]) -> CollectorRegistry:
    out = CollectorRegistry(auto_describe=False)
    out.register(Registries(registries))
    return out


def serve_metrics(host: str, port: int, registries: Iterable[CollectorRegistry]) -> None:
    """/metrics on ``host:port`` in a background thread (prometheus_client's own server).
    ValueError (with the address) when the port cannot be bound."""
    try:
        start_http_server(port, addr=host, registry=combined(registries))
    except OSError as exc:
        raise ValueError(f"metrics.port {port} on {host}: {exc.strerror or exc}") from None

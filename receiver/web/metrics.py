"""The web's Prometheus metrics, including the number Graph throttles on.

Graph publishes notifications with a 3-second client timeout and counts an answer over 2,900 ms
as slow; once 100 notifications are counted, 10% slow delays all of the endpoint's
notifications by 10 minutes and 15% drops them; the counts are flushed every 10 minutes
(concepts/change-notifications-delivery-webhooks.md, Throttling). The gauge
``receiver_web_slow_answer_share{threshold="2.9"}`` gives that share over the last 10 minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from receiver.web.validation import REASONS

SLOW_THRESHOLDS_S = (2.9,)  # Graph's slow answer; its client gives up at 3 s
WINDOW_S = 600
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.9, 3.0)


class SlowAnswerWindow:
    """Counts of answers and slow answers per second over a sliding window."""

    def __init__(
        self,
        window_s: int = WINDOW_S,
        thresholds: tuple[float, ...] = SLOW_THRESHOLDS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.thresholds = thresholds
        self._clock = clock
        # per-second slots: [second, total, slow per threshold...]
        self._slots: list[list[float]] = [
            [-1.0, 0.0] + [0.0] * len(thresholds) for _ in range(window_s)
        ]

    def record(self, duration_s: float) -> None:
        second = int(self._clock())
        slot = self._slots[second % self.window_s]
        if slot[0] != second:
            slot[:] = [float(second), 0.0] + [0.0] * len(self.thresholds)
        slot[1] += 1
        for i, threshold in enumerate(self.thresholds):
            if duration_s > threshold:
                slot[2 + i] += 1

    def shares(self) -> dict[float, float]:
        now = int(self._clock())
        total = 0.0
        slow = [0.0] * len(self.thresholds)
        for slot in self._slots:
            if now - self.window_s < slot[0] <= now:
                total += slot[1]
                for i in range(len(self.thresholds)):
                    slow[i] += slot[2 + i]
        return {t: (slow[i] / total if total else 0.0) for i, t in enumerate(self.thresholds)}


class _SlowShareCollector(Collector):
    def __init__(self, window: SlowAnswerWindow) -> None:
        self._window = window

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "receiver_web_slow_answer_share",
            "Share of notification answers slower than the threshold over the last 10 minutes "
            "(Graph delays an endpoint's notifications above 10% and drops them above 15%)",
            labels=["threshold"],
        )
        for threshold, share in self._window.shares().items():
            family.add_metric([f"{threshold:g}"], share)
        yield family


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "receiver_web_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.items = Counter(
            "receiver_web_items",
            "Notification items by outcome and reason",
            ["kind", "outcome", "reason"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "receiver_web_ack_seconds",
            "Time to answer a notification POST (seconds)",
            ["path"],
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.slow = SlowAnswerWindow()
        self.registry.register(_SlowShareCollector(self.slow))
        # Children bound once (present from the start, so rates work; cheap on the hot path).
        self._rejected = {r: self.items.labels("notification", "rejected", r) for r in REASONS}
        self._accepted = self.items.labels("notification", "accepted", "")
        self._lifecycle = self.items.labels("lifecycle", "accepted", "")
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    def rejected(self, reason: str, n: int = 1) -> None:
        self._rejected[reason].inc(n)

    def accepted(self, notifications: int, lifecycle: int) -> None:
        if notifications:
            self._accepted.inc(notifications)
        if lifecycle:
            self._lifecycle.inc(lifecycle)

    def answered(self, path: str, status: int, duration_s: float, *, notification: bool) -> None:
        child = self._requests.get((path, status))
        if child is None:
            child = self._requests[(path, status)] = self.requests.labels(path, str(status))
        child.inc()
        if notification:
            latency = self._latency.get(path)
            if latency is None:
                latency = self._latency[path] = self.ack_latency.labels(path)
            latency.observe(duration_s)
            self.slow.record(duration_s)

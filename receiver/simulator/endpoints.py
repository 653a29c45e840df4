"""How Graph judges a webhook endpoint by its answer times, and what it does about it.

concepts/change-notifications-delivery-webhooks.md (Throttling): Graph publishes notifications
with a 3-second client timeout; an answer over 2,900 ms is slow. Once an endpoint has 100
notifications counted, 10% slow answers flag it: all its notifications are delayed by 10
minutes (failed ones are retried in 10 minutes); 15% slow answers: its notifications are
dropped. The counts are flushed every 10 minutes. All four figures come from
`SimulatorConfig`, so tests can shrink them; time here is real (monotonic), like the
notifier's retries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from receiver.simulator.config import SimulatorConfig

NORMAL, DELAYED, DROPPED = "normal", "delayed", "dropped"


@dataclass
class Endpoint:
    """Answer counts of one notification URL in the current window."""

    window_started: float = field(default_factory=time.monotonic)
    count: int = 0
    slow: int = 0


class EndpointHealth:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._endpoints: dict[str, Endpoint] = {}

    def _current(self, url: str) -> Endpoint:
        now = time.monotonic()
        endpoint = self._endpoints.get(url)
        if endpoint is None or now - endpoint.window_started >= self.config.notifier_count_window_s:
            endpoint = self._endpoints[url] = Endpoint(window_started=now)  # flushed
        return endpoint

    def record(self, url: str, *, seconds: float, timed_out: bool) -> None:
        """Count one answer (or the lack of one: a timeout is slow by definition)."""
        endpoint = self._current(url)
        endpoint.count += 1
        if timed_out or seconds > self.config.notifier_slow_s:
            endpoint.slow += 1

    def state(self, url: str) -> str:
        endpoint = self._current(url)
        config = self.config
        if endpoint.count < config.notifier_flag_min_count:
            return NORMAL
        ratio = endpoint.slow / endpoint.count
        if ratio >= config.notifier_drop_ratio:
            return DROPPED
        if ratio >= config.notifier_delay_ratio:
            return DELAYED
        return NORMAL

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            url: {
                "state": self.state(url),
                "count": self._current(url).count,
                "slow": self._current(url).slow,
            }
            for url in sorted(self._endpoints)
        }

    def clear(self) -> None:
        self._endpoints.clear()

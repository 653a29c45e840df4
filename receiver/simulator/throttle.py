"""Sliding-window request limits per app per tenant, measured in real time.

Each rule names a bucket (e.g. "security": legacy alerts, alerts_v2 and incidents share
150 requests a minute), a limit and a window. Over the limit: the caller gets 429 with a
Retry-After of the seconds until the oldest counted request leaves the window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    bucket: str
    limit: int
    window_s: float


class Throttle:
    def __init__(self, rules: list[Rule], clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = {rule.bucket: rule for rule in rules}
        self.enabled = True
        self._clock = clock
        self._hits: dict[tuple[str, str, str], deque[float]] = {}

    def check(self, bucket: str | None, tenant_id: str, app_id: str) -> float | None:
        """Count one request; None when allowed, else the Retry-After in seconds."""
        if not self.enabled or bucket is None or bucket not in self.rules:
            return None
        rule = self.rules[bucket]
        now = self._clock()
        hits = self._hits.setdefault((bucket, tenant_id, app_id), deque())
        while hits and hits[0] <= now - rule.window_s:
            hits.popleft()
        if len(hits) >= rule.limit:
            return max(0.001, round(hits[0] + rule.window_s - now, 3))
        hits.append(now)
        return None

    def reset(self) -> None:
        self._hits.clear()

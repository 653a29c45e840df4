"""Faults the control API injects, and the counters it reads back.

Each count-based fault is consumed one request (or notification) at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = (
    "graph_429",
    "graph_5xx",
    "graph_latency",
    "token_failure",
    "drop_notifications",
    "duplicate_notifications",
    "reorder_notifications",
    "batch_refused",
)

# The faults that are a count and nothing else: the field of the same name holds it.
_COUNTED = frozenset(
    {"drop_notifications", "duplicate_notifications", "reorder_notifications", "batch_refused"}
)


@dataclass
class Faults:
    graph_429: int = 0
    graph_429_retry_after: float = 1.0
    graph_5xx: int = 0
    graph_5xx_status: int = 503
    graph_latency_ms: int = 0
    token_failures: int = 0
    token_failure_status: int = 503
    drop_notifications: int = 0
    duplicate_notifications: int = 0
    reorder_notifications: int = 0
    batch_refused: int = 0

    def inject(self, kind: str, body: dict[str, Any]) -> None:
        count = int(body.get("count", 1))
        if count < 0:
            raise ValueError("count must be >= 0")
        if kind == "graph_429":
            self.graph_429 = count
            self.graph_429_retry_after = float(body.get("retryAfter", 1.0))
        elif kind == "graph_5xx":
            self.graph_5xx = count
            self.graph_5xx_status = int(body.get("status", 503))
            if not 500 <= self.graph_5xx_status <= 599:
                raise ValueError("status must be 5xx")
        elif kind == "graph_latency":
            self.graph_latency_ms = int(body.get("ms", 0))
        elif kind == "token_failure":
            self.token_failures = count
            self.token_failure_status = int(body.get("status", 503))
        elif kind in _COUNTED:  # a count and nothing else
            setattr(self, kind, count)
        else:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")

    def take(self, name: str) -> bool:
        """Consume one unit of a count-based fault; True when it applies now."""
        left = int(getattr(self, name))
        if left <= 0:
            return False
        setattr(self, name, left - 1)
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "graph_429": {"count": self.graph_429, "retryAfter": self.graph_429_retry_after},
            "graph_5xx": {"count": self.graph_5xx, "status": self.graph_5xx_status},
            "graph_latency": {"ms": self.graph_latency_ms},
            "token_failure": {"count": self.token_failures, "status": self.token_failure_status},
            "drop_notifications": {"count": self.drop_notifications},
            "duplicate_notifications": {"count": self.duplicate_notifications},
            "reorder_notifications": {"count": self.reorder_notifications},
        }


class Counters(Counter[str]):
    """Named event counts (requests by family, tokens, notifications, faults)."""

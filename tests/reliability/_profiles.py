"""The two profiles: what load, which faults when, how long.

Times are seconds from the start of the load. Each fault kind is carried out by
``_faults.py``. The short profile is what CI runs (well under three minutes on two shared
cores); the long one runs every fault, then holds steady load for the soak and compares the
resident memory of every process between the end of the faults and the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    duration_s: float  # load is applied this long
    rate: float  # legacy (pushed) alerts created per second
    v2_every_s: float  # one alerts_v2 alert (polled) this often
    update_every: int  # every n-th pushed alert is updated a few seconds later
    drain_timeout_s: float  # after the load, how long deliveries may take to complete
    faults: tuple[Fault, ...]
    baseline: tuple[float, float]  # window (s) with no fault: the web's ack baseline
    failing: tuple[float, float]  # window (s) while a sink fails: the ack must not move
    rss_from_s: float | None = None  # soak: RSS baseline taken at this time (after the faults)


SINK_DOWN_AT, SINK_DOWN_S = 10.0, 18.0

SHORT = Profile(
    name="short",
    duration_s=70,
    rate=8,
    v2_every_s=3,
    update_every=10,
    drain_timeout_s=75,
    faults=(
        # Alone in its window, so the web's ack with a failing sink is compared fairly.
        Fault(SINK_DOWN_AT, "sink_down", {"sink": "flaky", "seconds": SINK_DOWN_S}),
        Fault(30, "graph_429", {"count": 40, "retryAfter": 1}),
        Fault(31, "reorder", {"count": 12}),
        Fault(32, "duplicate", {"count": 20}),
        Fault(36, "kill_mid_poll", {"role": "worker-1"}),
        Fault(42, "kill", {"role": "web-1"}),
        Fault(48, "kill", {"role": "scheduler-1"}),
        Fault(52, "deleted_alert"),
        Fault(54, "lifecycle", {"event": "reauthorizationRequired"}),
        Fault(56, "redis_restart"),
        Fault(64, "redis_wipe"),
    ),
    baseline=(2.0, SINK_DOWN_AT),
    failing=(SINK_DOWN_AT + 2, SINK_DOWN_AT + SINK_DOWN_S),
)


def _long() -> Profile:
    cycle: list[Fault] = [
        Fault(60, "sink_down", {"sink": "flaky", "seconds": 180}),
        Fault(250, "reorder", {"count": 30}),
        Fault(255, "duplicate", {"count": 50}),
        Fault(260, "sink_slow", {"sink": "flaky", "seconds": 60, "delay_s": 1.5}),
        Fault(330, "graph_429", {"count": 150, "retryAfter": 2}),
        Fault(360, "kill_mid_poll", {"role": "worker-1"}),
        Fault(380, "kill", {"role": "worker-2"}),
        Fault(400, "kill", {"role": "web-1"}),
        Fault(420, "kill", {"role": "web-2"}),
        Fault(440, "kill", {"role": "scheduler-1"}),
        Fault(460, "deleted_alert"),
        Fault(470, "lifecycle", {"event": "reauthorizationRequired"}),
        Fault(480, "lifecycle", {"event": "missed"}),
        Fault(490, "lifecycle", {"event": "subscriptionRemoved"}),
        Fault(520, "redis_restart"),
        Fault(560, "redis_wipe"),
    ]
    return Profile(
        name="long",
        duration_s=30 * 60,
        rate=10,
        v2_every_s=2,
        update_every=10,
        drain_timeout_s=240,
        faults=tuple(cycle),
        baseline=(10.0, 60.0),
        failing=(70.0, 240.0),
        rss_from_s=600.0,
    )


LONG = _long()
PROFILES = {"short": SHORT, "long": LONG}

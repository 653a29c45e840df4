"""The demo's alerts, made through the simulator's control API: mostly alerts_v2 alerts in new
or open incidents (polled: what a tenant gets today), every fourth a legacy alert (pushed: the
push path, labelled), and now and then a status change on an earlier one."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from receiver.cli.demo.settings import PUSH_RESOURCE, TENANT

if TYPE_CHECKING:
    import httpx

PUSH_EVERY = 4  # every fourth alert of the stream is a legacy one, pushed
SEVERITIES = ("high", "medium", "medium", "low", "low", "informational")


def show_push_path(control: httpx.Client, sim: str) -> None:
    """The subscription exists (today's Graph creates it, then sends nothing); switch the
    simulator to Graph as it was before the retirement, so the push path can be seen."""
    mode = control.get(f"{sim}/_sim/legacy-alerts").json()
    print(
        f"demo: push path: subscribed to {PUSH_RESOURCE} (legacy alerts API, retired "
        f"{str(mode.get('retiredAt', '2026-10-15'))[:10]}: today's Graph creates the "
        "subscription and sends nothing)",
        flush=True,
    )
    control.post(f"{sim}/_sim/legacy-alerts", json={"mode": "live"}).raise_for_status()
    print(
        f"demo: push path: the simulator now serves the legacy API live (Graph before "
        f"the retirement); every {PUSH_EVERY}th alert below is pushed",
        flush=True,
    )


@dataclass
class AlertStream:
    """Creates ``rate`` alerts a second (up to ``max_alerts``) in the simulator at ``sim``,
    calling ``check`` before each (it raises when a part of the demo died)."""

    control: httpx.Client
    sim: str
    rate: float
    max_alerts: int | None
    stop_event: threading.Event
    check: Callable[[], None]
    created: int = 0
    rng: random.Random = field(default_factory=random.Random)  # demo data, not security
    updatable: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kind, next)
    incidents: list[str] = field(default_factory=list)  # open incidents a new alert may join

    def run(self, deadline: float | None) -> None:
        started = time.monotonic()
        while not self.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.check()
            if self.max_alerts is None or self.created < self.max_alerts:
                self._create_one()
                next_at = started + self.created / self.rate
            else:
                next_at = time.monotonic() + 1.0
            if deadline is not None:
                next_at = min(next_at, deadline)
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _create_one(self) -> None:
        # The first alert is a high one, so the Teams preview gets a card early.
        severity = "high" if self.created == 0 else self.rng.choice(SEVERITIES)
        if self.created % PUSH_EVERY == PUSH_EVERY - 1:
            alert_id, kind, line = self._legacy_alert(severity)
        else:
            alert_id, kind, line = self._v2_alert(severity)
        self.created += 1
        self.updatable.append((alert_id, kind, "inProgress"))
        print(f"demo: created #{self.created} {severity:<13} {line}", flush=True)
        if self.created % 4 == 0 and len(self.updatable) > 1:
            self._update()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a control-API request for the demo tenant; the simulator's answer."""
        response = self.control.post(
            f"{self.sim}/_sim/{path}", json={"tenantId": TENANT, "count": 1, **body}
        )
        response.raise_for_status()
        return response.json()

    def _new_alert(self, kind: str, body: dict[str, Any]) -> str:
        """One alert of ``kind`` (v2 or legacy) made by the simulator; its id."""
        return str(self._post("alerts", {"kind": kind, **body})[kind][0])

    def _v2_alert(self, severity: str) -> tuple[str, str, str]:
        """An alerts_v2 alert: in a new incident, or joining an open one (what a tenant gets
        today, by polling)."""
        from receiver.simulator.payloads import V2_SOURCES

        service = self.rng.choice(sorted(V2_SOURCES))
        title = self.rng.choice(V2_SOURCES[service][3])
        if self.incidents and self.rng.random() < 0.4:
            incident = self.rng.choice(self.incidents)
            alert_id = self._new_alert(
                "v2",
                {
                    "serviceSource": service,
                    "severity": severity,
                    "incidentId": incident,
                    "v2Overrides": {
                        "title": title,
                        "description": f"{title}. Investigate the evidence.",
                    },
                },
            )
            how = f"joins incident {incident}"
        else:
            answer = self._post(
                "incidents", {"alerts": 1, "serviceSource": service, "severity": severity}
            )
            incident = str(answer["ids"][0])
            alert_id = str(answer["alerts"][incident][0])
            self.incidents.append(incident)
            del self.incidents[:-5]
            how = f"new incident {incident}"
        return (
            alert_id,
            "v2",
            (
                f"{V2_SOURCES[service][1]}: alerts_v2 alert {alert_id[:12]}, "
                f"{how} [polled: what a tenant gets today]"
            ),
        )

    def _legacy_alert(self, severity: str) -> tuple[str, str, str]:
        """A legacy alert, which the simulator's live mode pushes (the push path, labelled)."""
        from receiver.simulator.payloads import LEGACY_PROVIDERS

        provider = self.rng.choice(sorted(LEGACY_PROVIDERS))
        title, category = self.rng.choice(LEGACY_PROVIDERS[provider]["alerts"])
        alert_id = self._new_alert(
            "legacy",
            {
                "provider": provider,
                "severity": severity,
                "overrides": {"title": title, "category": category},
            },
        )
        return (
            alert_id,
            "legacy",
            (
                f"{provider}: {title} [push path demo: legacy alert "
                f"{alert_id[:12]}, pushed by change notification]"
            ),
        )

    def _update(self) -> None:
        index = self.rng.randrange(len(self.updatable) - 1)  # not the one just created
        alert_id, kind, status = self.updatable.pop(index)
        response = self.control.patch(
            f"{self.sim}/_sim/alerts/{alert_id}",
            json={"tenantId": TENANT, "changes": {"status": status}},
        )
        response.raise_for_status()
        print(f"demo: updated {kind} alert {alert_id[:12]}: status {status}", flush=True)
        if status == "inProgress":
            self.updatable.append((alert_id, kind, "resolved"))

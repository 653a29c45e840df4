"""Poll benchmark: many tenants polled through `receiver serve` at Graph's latency.

Graph pushes nothing for alerts_v2 or incidents, so a tenant gets them as fast as the poller
reads them. This starts a private Redis, the simulator (its per-app throttling on, every Graph
call held by its ``graph_latency`` fault, 150 ms by default) and `receiver serve` as
processes, with a recording webhook endpoint in this process. The simulator gets ``--tenants``
new tenants, each one polled for alerts_v2 and incidents every ``--interval`` seconds. Then,
for ``--duration`` seconds, alerts_v2 and incidents change at random moments in random
tenants (a Poisson process of ``--rate`` changes a second through the control API: a new
alert with its incident, a new incident with its alert, or an alert's status or severity
changed, which updates its incident too).

For every version delivered to the sink: its delay from its ``lastUpdateDateTime`` (on the
simulator's clock) to its arrival. Graph requests per tenant per minute are the simulator's
own count of /security requests over the change period.

    .venv/bin/python -m tests.benchmarks.poll [--tenants 200] [--duration 120] [--interval 10]

Last line: poll_lag_p99_s=<value> (target: <= interval + 2 s, with <= 13 Graph requests per
tenant per minute at a 10 s interval).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.benchmarks._common import add_poll_load_options
from tests.benchmarks.pipeline import cpu_seconds, parse_time, percentile
from tests.fixtures.deploy import (
    ROUTE_ALL_TO_HOOK,
    Proc,
    Simulator,
    local_web,
    receiver_config,
    role_command,
    simulator_tenants,
    webhook,
    write_config,
)
from tests.fixtures.redis_server import free_port, private_redis

SOURCES = ("alerts_v2", "incidents")


class Recorder:
    """The sink's far end, in a thread: when each (kind, id, version) first arrived."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str, str], float] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        self.port = free_port()
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def hook(self, request: Request) -> Response:
        now = time.time()
        body = json.loads(await request.body())
        key = (
            str(body["kind"]),
            str(body["id"]),
            str(body.get("updated_at") or body.get("created_at")),
        )
        with self._lock:
            if key in self.arrived:
                self.duplicates += 1
            self.arrived.setdefault(key, now)
        return Response(status_code=204)

    def versions(self, kind: str, item_id: str) -> list[str]:
        with self._lock:
            return [v for k, i, v in self.arrived if k == kind and i == item_id]

    def __enter__(self) -> Recorder:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Changes:
    """The changes made, per tenant: the alerts we can update next."""

    made: int = 0
    alerts: dict[str, list[str]] = field(default_factory=dict)

    def change(self, sim: httpx.Client, tenant_id: str, rng: random.Random) -> None:
        known = self.alerts.setdefault(tenant_id, [])
        roll = rng.random()
        if known and roll < 0.4:
            alert_id = rng.choice(known)
            change = rng.choice(
                [
                    {"status": "inProgress"},
                    {"status": "resolved"},
                    {"severity": rng.choice(["low", "medium", "high"])},
                ]
            )
            _ok(sim.patch(f"/alerts/{alert_id}", json={"tenantId": tenant_id, "changes": change}))
        elif roll < 0.75:
            body = _ok(sim.post("/alerts", json={"tenantId": tenant_id, "count": 1, "kind": "v2"}))
            known += body["v2"]
        else:
            body = _ok(
                sim.post("/incidents", json={"tenantId": tenant_id, "count": 1, "alerts": 1})
            )
            for ids in body["alerts"].values():
                known += ids
        self.made += 1


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"simulator control {response.request.method} "
            f"{response.request.url.path}: {response.status_code} "
            f"{response.text[:300]}"
        )
    return response.json() if response.content else None


def _metric(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples (all labels) in an exposition text."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE):
        total += float(m.group(1))
    return total


def wait_for_last_versions(
    sim: httpx.Client, changes: Changes, recorder: Recorder, timeout_s: float
) -> list[tuple[str, str]]:
    """Wait until every changed alert's last version (as the simulator has it now) reached
    the sink; the (tenant, alert) pairs still missing after ``timeout_s``."""
    latest = {
        (t, a["id"]): a["lastUpdateDateTime"]
        for t in changes.alerts
        for a in _ok(sim.get("/alerts", params={"tenantId": t, "kind": "v2"}))["alerts"]
    }
    deadline = time.monotonic() + timeout_s
    missing = list(latest)
    while missing and time.monotonic() < deadline:
        missing = [
            k
            for k in missing
            if not any(
                parse_time(v) >= parse_time(latest[k]) for v in recorder.versions("alert", k[1])
            )
        ]
        time.sleep(0.2)
    return missing


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_poll_load_options(parser, tenants=200, duration=120.0, rate=5.0)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    print(f"machine load at start: {_load()}")

    with (
        private_redis() as redis_server,
        tempfile.TemporaryDirectory() as tmp,
        Recorder() as recorder,
    ):
        site, web_port = Simulator(Path(tmp)), free_port()
        with (
            site.proc("--allow-http"),
            httpx.Client(
                base_url=f"{site.url}/_sim", verify=site.ca, trust_env=False, timeout=30
            ) as sim,
        ):
            made = _ok(sim.post("/tenants", json={"count": args.tenants, "credential": "secret"}))[
                "tenants"
            ]
            poll = {"alerts_v2": True, "incidents": True, "interval_s": args.interval}
            tenants = simulator_tenants(made, "t{:03d}", poll=poll)
            # Graph's limits stay on, on both sides (150 /security requests a minute).
            config = receiver_config(
                redis_server.url,
                site,
                web=local_web(web_port),
                tenants=tenants,
                sinks=[webhook("hook", f"http://127.0.0.1:{recorder.port}/hook")],
                # ERROR: failures are read from its /metrics instead.
                log_level="ERROR",
            )
            path = write_config(Path(tmp) / "receiver.yaml", config, routes=ROUTE_ALL_TO_HOOK)
            _ok(sim.post("/faults", json={"kind": "graph_latency", "ms": args.latency_ms}))
            serve = role_command("serve", path)
            ready = f"http://127.0.0.1:{web_port}/readyz"
            with Proc(
                "serve", serve, Path(tmp) / "serve.log", ready, ready_timeout_s=60
            ) as receiver:
                # The first round (tokens for every tenant, first watermarks) is warm-up.
                deadline = time.monotonic() + 120
                while _ok(sim.get("/counters")).get("graph.security", 0) < 2 * args.tenants:
                    if time.monotonic() > deadline:
                        print(
                            "error: the receiver never finished a first poll round", file=sys.stderr
                        )
                        return 1
                    time.sleep(0.2)
                skew = float(_ok(sim.get("/clock"))["offsetSeconds"])
                _ok(sim.delete("/counters"))
                cpu_before = cpu_seconds(receiver.pid)
                changes = Changes()
                started = time.monotonic()
                start_wall = time.time()
                ids = [t["tenant_id"] for t in tenants]
                next_at = started + rng.expovariate(args.rate)
                while next_at < started + args.duration:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    changes.change(sim, rng.choice(ids), rng)
                    next_at += rng.expovariate(args.rate)
                time.sleep(max(0.0, started + args.duration - time.monotonic()))
                counters = _ok(sim.get("/counters"))
                period_min = (time.monotonic() - started) / 60
                cpu_s = cpu_seconds(receiver.pid) - cpu_before
                load_during = _load()
                # Every alert's last version must arrive (its incident's too, by its own).
                missing = wait_for_last_versions(sim, changes, recorder, 2 * args.interval + 30)
                metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text

    lags = [
        arrived - (parse_time(version) - skew)
        for (_, _, version), arrived in list(recorder.arrived.items())
        if parse_time(version) - skew >= start_wall
    ]
    requests = counters.get("graph.security", 0)
    per_tenant_min = requests / args.tenants / period_min
    print(
        f"tenants: {args.tenants}, poll interval {args.interval:g} s, Graph latency "
        f"{args.latency_ms} ms, {changes.made} changes in {args.duration:g} s"
    )
    print(
        f"versions delivered: {len(lags)} (alerts and incidents), "
        f"{len(missing)} alerts' last version missing, {recorder.duplicates} duplicated"
    )
    print(
        f"Graph: {requests} /security requests, {per_tenant_min:.2f} per tenant per minute; "
        f"{counters.get('graph.429', 0)} throttled (429)"
    )
    print(
        f"poller: {_metric(metrics, 'receiver_poll_jobs_skipped_total'):.0f} times a source "
        f"was due while its last poll ran, "
        f"{_metric(metrics, 'receiver_poller_failures_total'):.0f} failed polls"
    )
    print(
        f"receiver CPU: {cpu_s / (period_min * 60) * 100:.0f}% of one core; "
        f"machine load during the run: {load_during}"
    )
    if not lags:
        print("error: nothing delivered", file=sys.stderr)
        return 1
    # The floor: a change made at a random moment waits for its tenant's next poll.
    print(
        f"baseline (waiting for the next poll alone): p50 {args.interval * 0.5:.2f} s, "
        f"p99 {args.interval * 0.99:.2f} s"
    )
    print(
        f"lag (lastUpdateDateTime -> sink): p50 {percentile(lags, 50):.2f} s, "
        f"p99 {percentile(lags, 99):.2f} s, max {max(lags):.2f} s"
    )
    if missing:
        print(f"error: {len(missing)} alerts' last version never arrived", file=sys.stderr)
        return 1
    print(f"poll_lag_p99_s={percentile(lags, 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

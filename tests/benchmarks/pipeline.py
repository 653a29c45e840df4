"""Pipeline benchmark: simulator -> receiver (`receiver serve`) -> a recording HTTP sink.

Starts a private Redis, the simulator (throttling off) and `receiver serve` as processes, and
a recording webhook endpoint in this process. The receiver creates its subscription, then
alerts are created in the simulator at a set rate; the simulator's notifier pushes them like
Graph. Latency is measured per alert from the moment the simulator began posting the
notification to the moment the sink received the alert. The baseline, from the same run, is
the web's own share: how long the notification POSTs took to be answered.

    .venv/bin/python -m tests.benchmarks.pipeline [--alerts 2000] [--rate 200]

Last line: e2e_p99_ms=<value> (target: under 100 ms at 200 alerts/s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.benchmarks._common import free_port, private_redis, process

TENANT = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"  # the simulator's demo tenant
CLIENT_ID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
CLIENT_SECRET = "sim-demo-secret~not-a-real-credential"  # a simulator demo credential


class Recorder:
    """The sink's far end, in a thread: records when each alert arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.duplicates = 0
        self.port = free_port()
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, port=self.port, log_config=None,
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def hook(self, request: Request) -> Response:
        now = time.time()
        body = json.loads(await request.body())
        if body["first_seen"]:
            if body["id"] in self.arrived:
                self.duplicates += 1
            self.arrived.setdefault(body["id"], now)
        return Response(status_code=204)

    def __enter__(self) -> Recorder:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def parse_time(text: str) -> float:
    head, _, rest = text.replace("Z", "").partition(".")
    frac = float("0." + rest) if rest else 0.0
    return datetime.fromisoformat(head + "+00:00").timestamp() + frac


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="alerts per second")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)

    with private_redis() as redis_server, tempfile.TemporaryDirectory() as tmp, \
            Recorder() as recorder:
        sim_port, web_port = free_port(), free_port()
        sim = f"https://127.0.0.1:{sim_port}"
        ca = str(Path(tmp) / "ca.pem")
        (Path(tmp) / "routes.yaml").write_text("route:\n  receiver: hook\n")
        config = Path(tmp) / "receiver.yaml"
        config.write_text(yaml.safe_dump({
            "redis": {"url": redis_server.url},
            "web": {"port": web_port, "public_url": f"http://127.0.0.1:{web_port}",
                    "allow_http": True},
            # The simulator's throttling is off, so is ours (Graph's real limit is 150/min).
            "graph": {"authority_host": sim, "graph_url": f"{sim}/v1.0", "ca_bundle": ca,
                      "rate_limit_per_minute": 100_000},
            "tenants": [{"name": "contoso", "tenant_id": TENANT, "client_id": CLIENT_ID,
                         "client_secret": CLIENT_SECRET, "poll": {"alerts_v2": False},
                         "subscriptions": [{"resource": "security/alerts?$filter="
                                            "vendorInformation/vendor eq 'Microsoft'"}]}],
            "sinks": [{"type": "webhook", "name": "hook",
                       "url": f"http://127.0.0.1:{recorder.port}/hook"}],
            "routes_file": "routes.yaml",
            "logging": {"level": "WARNING", "format": "text"},
        }))
        simulator = [sys.executable, "-m", "receiver.simulator", "--port", str(sim_port),
                     "--tls-dir", tmp, "--ca-out", ca, "--no-throttle", "--allow-http",
                     "--log-level", "warning", "--legacy-alerts", "live"]
        serve = [sys.executable, "-m", "receiver.cli", "serve", "--config", str(config)]
        with process(simulator, f"{sim}/_sim/health"), \
                process(serve, f"http://127.0.0.1:{web_port}/readyz") as receiver, \
                httpx.Client(verify=ca, trust_env=False, timeout=30) as control:
            deadline = time.monotonic() + 30
            while not control.get(f"{sim}/_sim/subscriptions").json().get("subscriptions"):
                if time.monotonic() > deadline:
                    print("error: the receiver created no subscription", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            ids: list[str] = []
            cpu_before = cpu_seconds(receiver.pid)
            tick = 0.05
            per_tick = max(1, round(args.rate * tick))
            started = time.monotonic()
            while len(ids) < args.alerts:
                n = min(per_tick, args.alerts - len(ids))
                ids += control.post(f"{sim}/_sim/alerts",
                                    json={"tenantId": TENANT, "count": n}).json()["ids"]
                next_at = started + tick * (len(ids) / per_tick)
                time.sleep(max(0.0, next_at - time.monotonic()))
            sent_s = time.monotonic() - started
            deadline = time.monotonic() + args.timeout
            while len(recorder.arrived) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.1)
            cpu_per_alert_ms = (cpu_seconds(receiver.pid) - cpu_before) * 1000 / len(ids)
            deliveries: list[dict[str, Any]] = control.get(
                f"{sim}/_sim/deliveries", params={"kind": "notification"}).json()["deliveries"]

    posted: dict[str, float] = {}
    acks: list[float] = []
    for d in deliveries:
        if d.get("statusCode") != 202:
            continue
        began = parse_time(d["time"]) - d["durationMs"] / 1000
        acks.append(d["durationMs"])
        for item in d["body"]["value"]:
            alert_id = item["resource"].rsplit("/", 1)[-1]
            posted.setdefault(alert_id, began)
    latencies = [(recorder.arrived[i] - posted[i]) * 1000 for i in ids
                 if i in recorder.arrived and i in posted]
    lost = len(ids) - len(recorder.arrived)
    print(f"alerts: {len(ids)} created at {len(ids) / sent_s:.0f}/s, {len(recorder.arrived)} "
          f"delivered, {lost} missing, {recorder.duplicates} duplicated")
    if not latencies:
        print("error: no latencies measured", file=sys.stderr)
        return 1
    print(f"baseline (web ack of the notification POST): p50 {percentile(acks, 50):.1f} ms, "
          f"p99 {percentile(acks, 99):.1f} ms")
    print(f"end to end (notification -> sink): p50 {percentile(latencies, 50):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms")
    # CPU time is steadier than latency on a shared machine: it shows what a change saved.
    print(f"receiver CPU: {cpu_per_alert_ms:.2f} ms per alert "
          f"({cpu_per_alert_ms * args.rate / 10:.0f}% of one core at {args.rate:g}/s)")
    if lost or recorder.duplicates:
        print("error: alerts lost or duplicated", file=sys.stderr)
        return 1
    print(f"e2e_p99_ms={percentile(latencies, 99):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pipeline benchmark: CPU per alert against a bare baseline, the sustainable rate, e2e latency.

A fixed offered rate means something different on every machine (a slow CPU is saturated by
a rate a fast one idles at), so this benchmark measures in one run:

1. **baseline**: the CPU one bare process (no product: httpx, redis-py, asyncio) spends per
   alert on the bare necessities: the HTTPS GET of the alert from the simulator, the POST to
   the recording sink, three Redis round trips;
2. **sustainable rate** of one `receiver serve` process (simulator -> notification -> web ->
   fetch -> route -> deliver -> recording sink): the offered rate is stepped up until the
   backlog grows (late alerts slower than early ones, or not all delivered soon after the
   step) or the receiver saturates its core;
3. at **50 % of that rate**: the receiver's CPU per alert, its ratio to the baseline, e2e
   p50/p99 (from the moment the simulator began posting the notification to the moment the
   sink answered);
4. the same rate **with real-world latencies** (the simulator's Graph answers after 150 ms, the
   sink after 100 ms): it must hold, with e2e p99 <= 50 ms + 250 ms -- the stages overlap
   their waits instead of queueing behind them.

    .venv/bin/python -m tests.benchmarks.pipeline [--brief]

Second-to-last line: pipeline_cpu_ratio=<receiver CPU per alert / baseline CPU per alert>;
last line: e2e_p99_ms=<p99 at 50 % of the sustainable rate> (target <= 50).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fixtures.deploy import DEMO_CLIENT_ID as CLIENT_ID
from tests.fixtures.deploy import DEMO_CLIENT_SECRET as CLIENT_SECRET
from tests.fixtures.deploy import (
    DEMO_RESOURCE,
    ROOT,
    ROUTE_ALL_TO_HOOK,
    Proc,
    Simulator,
    demo_tenant,
    local_web,
    receiver_config,
    role_command,
    webhook,
    write_config,
)
from tests.fixtures.deploy import DEMO_TENANT as TENANT
from tests.fixtures.redis_server import free_port, private_redis

GRAPH_LATENCY_MS = 150  # the real world's Graph read
SINK_LATENCY_MS = 100  # the real world's sink answer
LATENCY_SLACK_MS = 50.0  # e2e target at 50 % load, and on top of the real-world waits
# The bare loop's requests in flight: the deliver stage's default per sink. (httpcore's pool
# costs more per request the more connections it holds: at 32 the bare loop costs ~40 % more.)
BARE_CONCURRENCY = 8
# Alerts are created this often. The simulator, like Graph, batches notifications (up to 50 ms
# per POST); a generator ticking at that same 50 ms beat against it, and half the POSTs then
# carried two ticks' alerts (13-14 instead of 6-7 at 130/s): the p99 measured that beat.
OFFER_TICK_S = 0.01


class RecorderApp:
    """The sink's far end: records when each alert's delivery was answered (after the sink's
    latency, when one is set), and says so to the benchmark (``/_arrived``)."""

    def __init__(self) -> None:
        self.arrived: list[tuple[str, float]] = []
        self.seen: set[str] = set()
        self.duplicates = 0
        self.delay_s = 0.0
        self.app = Starlette(
            routes=[
                Route("/hook", self.hook, methods=["POST"]),
                Route("/bare", self.bare, methods=["POST"]),
                Route("/_arrived", self.report, methods=["GET"]),
                Route("/_delay", self.delay, methods=["POST"]),
            ]
        )

    async def hook(self, request: Request) -> Response:
        body = json.loads(await request.body())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        now = time.time()
        if body["first_seen"]:
            if body["id"] in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(body["id"])
                self.arrived.append((body["id"], now))
        return Response(status_code=204)

    async def bare(self, request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    async def report(self, request: Request) -> Response:
        after = int(request.query_params.get("after", "0"))
        body = {"arrived": self.arrived[after:], "duplicates": self.duplicates}
        return Response(json.dumps(body), media_type="application/json")

    async def delay(self, request: Request) -> Response:
        self.delay_s = float(json.loads(await request.body())["s"])
        return Response(status_code=204)


class Recorder:
    """The recording sink, in a process of its own: the load generator's work in this
    process (creating alerts every 10 ms, reading the simulator's records) must not hold up
    the sink's answers, as it did when the sink was a thread here waiting for the GIL. Reads
    what the sink recorded into ``arrived`` (``sync``)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.duplicates = 0
        self.port = free_port()
        self._read = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=10
        )

    def set_delay(self, seconds: float) -> None:
        self._http.post("/_delay", json={"s": seconds}).raise_for_status()

    def sync(self) -> None:
        got = self._http.get("/_arrived", params={"after": self._read}).json()
        for alert_id, at in got["arrived"]:
            self.arrived[alert_id] = at
        self._read += len(got["arrived"])
        self.duplicates = got["duplicates"]

    def has_all(self, ids: list[str]) -> bool:
        self.sync()
        return all(i in self.arrived for i in ids)

    def __enter__(self) -> Recorder:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.pipeline", "--recorder", str(self.port)],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sync()
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.__exit__()
                    raise RuntimeError("the recording sink did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._http.close()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)


def serve_recorder(port: int) -> None:
    app = RecorderApp().app
    uvicorn.run(app, port=port, log_config=None, access_log=False, lifespan="off", loop="uvloop")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def parse_time(text: str) -> float:
    head, _, rest = text.replace("Z", "").partition(".")
    frac = float("0." + rest) if rest else 0.0
    return datetime.fromisoformat(head + "+00:00").timestamp() + frac


def host_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of the machine so far (Linux /proc/stat): steal is time the
    host gave this virtual machine's CPUs to others while they had work."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the baseline: the bare necessities, in a process of their own ------------------------


async def _bare(spec: dict[str, Any]) -> float:
    """CPU seconds per alert for GET alert (HTTPS) + POST to the sink + 3 Redis round trips."""
    from redis.asyncio import Redis

    sim, ids = spec["sim"], spec["ids"]
    verify = ssl.create_default_context(cafile=spec["ca"])
    redis = Redis.from_url(spec["redis"])
    sem = asyncio.Semaphore(spec["concurrency"])
    async with (
        httpx.AsyncClient(verify=verify, http2=True, trust_env=False) as graph,
        httpx.AsyncClient(trust_env=False) as sink,
    ):
        token = (
            await graph.post(
                f"{sim}/{TENANT}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        async def one(alert_id: str) -> None:
            async with sem:
                response = await graph.get(f"{sim}/v1.0/security/alerts/{alert_id}", headers=auth)
                response.raise_for_status()
                alert = response.json()
                body = json.dumps(alert, separators=(",", ":")).encode()
                await redis.set(
                    f"bare:seen:{alert_id}", alert["lastModifiedDateTime"], nx=True, ex=600
                )
                entry = await redis.xadd("bare:out", {"e": body})
                (
                    await sink.post(
                        spec["sink"], content=body, headers={"content-type": "application/json"}
                    )
                ).raise_for_status()
                await redis.xdel("bare:out", entry)

        warm = min(20, len(ids) // 5)
        await asyncio.gather(*(one(i) for i in ids[:warm]))
        started = time.process_time()
        await asyncio.gather(*(one(i) for i in ids[warm:]))
        used = time.process_time() - started
    await redis.aclose()
    return used / max(1, len(ids) - warm)


def baseline(env: Env, count: int) -> float:
    """Run the bare loop in a fresh process; its CPU per alert in ms."""
    sim, control = env.sim, env.control
    ids: list[str] = []
    while len(ids) < count:
        ids += control.post(
            f"{sim}/_sim/alerts", json={"tenantId": TENANT, "count": min(200, count - len(ids))}
        ).json()["ids"]
    spec = {
        "sim": sim,
        "ca": env.ca,
        "redis": env.redis_url,
        "ids": ids,
        "sink": f"http://127.0.0.1:{env.recorder.port}/bare",
        "concurrency": BARE_CONCURRENCY,
    }
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.pipeline", "--bare-child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=300,
    )
    return float(out.stdout.strip().splitlines()[-1]) * 1000


# --- the receiver under an offered rate ---------------------------------------------------


@dataclass
class Phase:
    rate: float
    ids: list[str]
    wall_s: float  # from the first creation to the last delivery (or the timeout)
    cpu_s: float  # the receiver's CPU over wall_s
    latencies: dict[str, float]  # alert id -> e2e ms
    delivered_in_time: bool
    steal: float = 0.0  # the share of the machine's CPU time the host took meanwhile

    @property
    def missing(self) -> int:
        return len(self.ids) - len(self.latencies)

    @property
    def cpu_per_alert_ms(self) -> float:
        return self.cpu_s * 1000 / max(1, len(self.ids))

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    def values(self) -> list[float]:
        return list(self.latencies.values())

    def drift_ms(self) -> float:
        """p50 of the last third's latencies minus the first third's: a backlog that builds
        makes late alerts wait longer than early ones."""
        ordered = [self.latencies[i] for i in self.ids if i in self.latencies]
        third = max(1, len(ordered) // 3)
        return percentile(ordered[-third:], 50) - percentile(ordered[:third], 50)


class Bench:
    def __init__(self, sim: str, control: httpx.Client, recorder: Recorder, pid: int) -> None:
        self.sim = sim
        self.control = control
        self.recorder = recorder
        self.pid = pid
        self.sequence = 0  # the simulator's deliveries read so far
        self.posted: dict[str, float] = {}  # alert id -> when its notification was posted

    def offer(self, rate: float, duration_s: float, grace_s: float) -> Phase:
        """Create alerts at ``rate`` for ``duration_s``, spread evenly (every ``OFFER_TICK_S``),
        and wait up to ``grace_s`` for the last to be delivered."""
        ids: list[str] = []
        tick = OFFER_TICK_S
        total = max(1, round(rate * duration_s))
        cpu_before = cpu_seconds(self.pid)
        steal_before, total_before = host_ticks()
        started = time.monotonic()
        ticks = 0
        while len(ids) < total:
            ticks += 1
            n = min(total, round(rate * tick * ticks)) - len(ids)
            if n > 0:
                ids += self.control.post(
                    f"{self.sim}/_sim/alerts", json={"tenantId": TENANT, "count": n}
                ).json()["ids"]
            time.sleep(max(0.0, started + tick * ticks - time.monotonic()))
        deadline = time.monotonic() + grace_s
        while not self.recorder.has_all(ids) and time.monotonic() < deadline:
            time.sleep(0.02)
        in_time = self.recorder.has_all(ids)
        wall = time.monotonic() - started
        cpu = cpu_seconds(self.pid) - cpu_before
        steal, total = host_ticks()
        stolen = (steal - steal_before) / max(1, total - total_before)
        return Phase(rate, ids, wall, cpu, self._latencies(ids), in_time, stolen)

    def _latencies(self, ids: list[str]) -> dict[str, float]:
        rows: list[dict[str, Any]] = self.control.get(
            f"{self.sim}/_sim/deliveries", params={"kind": "notification", "after": self.sequence}
        ).json()["deliveries"]
        posted = self.posted
        for d in rows:
            self.sequence = max(self.sequence, int(d["sequence"]))
            if d.get("statusCode") != 202:
                continue
            began = parse_time(d["time"]) - d["durationMs"] / 1000
            for item in d["body"]["value"]:
                posted.setdefault(item["resource"].rsplit("/", 1)[-1], began)
        self.recorder.sync()
        arrived = self.recorder.arrived
        return {i: (arrived[i] - posted[i]) * 1000 for i in ids if i in arrived and i in posted}

    def settle(self, phase: Phase, timeout_s: float = 60.0) -> Phase:
        """Wait for the late alerts of ``phase`` (a backlog clearing), then take every
        latency: what is still missing afterwards is lost."""
        self.drain(timeout_s)
        phase.latencies = self._latencies(phase.ids)
        return phase

    def drain(self, timeout_s: float = 30.0) -> None:
        """Let a backlog from an overloaded step clear before the next step starts."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.recorder.sync()
            before = len(self.recorder.arrived)
            time.sleep(0.5)
            self.recorder.sync()
            if len(self.recorder.arrived) == before:
                return


def sustainable(bench: Bench, start: float, step_s: float, grace_s: float, limit: float) -> float:
    """The highest offered rate the receiver keeps up with (see the module docstring)."""

    def holds(rate: float) -> bool:
        phase = bench.offer(rate, step_s, grace_s)
        ok = (
            phase.delivered_in_time
            and phase.missing == 0
            and phase.drift_ms() < 100
            and phase.cpu_share < 0.9
        )
        print(
            f"  step {rate:6.0f}/s: receiver at {phase.cpu_share:4.0%} of a core, "
            f"{phase.cpu_per_alert_ms:.2f} ms CPU per alert, p99 "
            f"{percentile(phase.values() or [0.0], 99):.0f} ms, drift "
            f"{phase.drift_ms() if phase.latencies else 0:+.0f} ms, "
            f"{phase.missing} late, steal {phase.steal:.0%} -> {'holds' if ok else 'backs up'}",
            flush=True,
        )
        bench.drain()
        return ok

    rate, good = start, 0.0
    while rate <= limit and holds(rate):
        good, rate = rate, rate * 1.4
    if good and rate <= limit:  # one bisection between the last rate that held and the first
        middle = (good + rate) / 2
        if holds(middle):
            good = middle
    return good


@dataclass
class Env:
    sim: str
    ca: str
    redis_url: str
    control: httpx.Client
    recorder: Recorder
    config: Path
    web_port: int

    @contextlib.contextmanager
    def receiver(self) -> Iterator[Bench]:
        """`receiver serve` running, its subscription made, warmed up."""
        serve = role_command("serve", self.config)
        ready = f"http://127.0.0.1:{self.web_port}/readyz"
        with Proc("serve", serve, self.config.parent / "serve.log", ready) as receiver:
            deadline = time.monotonic() + 30
            while (
                not self.control.get(f"{self.sim}/_sim/subscriptions").json().get("subscriptions")
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the receiver created no subscription")
                time.sleep(0.1)
            bench = Bench(self.sim, self.control, self.recorder, receiver.pid)
            bench.settle(bench.offer(20, 1.0, 5.0))  # warm-up: connections, token, caches
            yield bench


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    """A private Redis, the simulator (throttling off), the recording sink; the receiver's
    configuration written (one tenant, one push subscription, one webhook sink)."""
    with (
        private_redis() as redis_server,
        tempfile.TemporaryDirectory() as tmp,
        Recorder() as recorder,
    ):
        sim, web_port = Simulator(Path(tmp)), free_port()
        config = receiver_config(
            redis_server.url,
            sim,
            web=local_web(web_port),
            # The simulator's throttling is off, so is ours (Graph's real limit is 150/min).
            graph={"rate_limit_per_minute": 100_000},
            tenants=[
                demo_tenant(poll={"alerts_v2": False}, subscriptions=[{"resource": DEMO_RESOURCE}])
            ],
            sinks=[webhook("hook", f"http://127.0.0.1:{recorder.port}/hook")],
        )
        path = write_config(Path(tmp) / "receiver.yaml", config, routes=ROUTE_ALL_TO_HOOK)
        with (
            sim.proc("--no-throttle", "--allow-http", "--legacy-alerts", "live"),
            httpx.Client(verify=sim.ca, trust_env=False, timeout=30) as control,
        ):
            yield Env(sim.url, sim.ca, redis_server.url, control, recorder, path, web_port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brief", action="store_true", help="a short run (the suite's smoke test)")
    parser.add_argument("--step-s", type=float, default=6.0, help="seconds per rate step")
    parser.add_argument(
        "--measure-s",
        type=float,
        default=20.0,
        help="seconds at 50 %% of the sustainable rate (each of two runs)",
    )
    parser.add_argument("--start-rate", type=float, default=40.0)
    parser.add_argument("--max-rate", type=float, default=3000.0)
    parser.add_argument("--baseline-alerts", type=int, default=2000)
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recorder", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.recorder:
        serve_recorder(args.recorder)
        return 0
    if args.bare_child:
        print(f"{asyncio.run(_bare(json.loads(sys.stdin.read()))):.9f}")
        return 0
    if args.brief:
        args.step_s, args.measure_s, args.baseline_alerts = 2.0, 3.0, 200
        args.start_rate, args.max_rate = 20.0, 60.0

    with environment() as env:
        # The baseline first, while no subscription exists (no notifications).
        bare_ms = baseline(env, args.baseline_alerts)
        print(
            f"baseline (GET alert over HTTPS, POST to the sink, 3 Redis round trips, one "
            f"bare process, httpx and redis-py): {bare_ms:.3f} ms CPU per alert",
            flush=True,
        )
        with env.receiver() as bench:
            print(
                "sustainable rate of one `receiver serve` (stepped up until the backlog "
                "grows or the core saturates):",
                flush=True,
            )
            top = sustainable(bench, args.start_rate, args.step_s, grace_s=1.0, limit=args.max_rate)
            if not top:
                print("error: the receiver held not even the first rate", file=sys.stderr)
                return 1
            rate = top / 2
            half = bench.settle(bench.offer(rate, args.measure_s, grace_s=10.0))
            env.control.post(
                f"{env.sim}/_sim/faults", json={"kind": "graph_latency", "ms": GRAPH_LATENCY_MS}
            )
            env.recorder.set_delay(SINK_LATENCY_MS / 1000)
            slow = bench.settle(bench.offer(rate, args.measure_s, grace_s=10.0))
        env.recorder.sync()
        duplicates = env.recorder.duplicates
    print(
        f"sustainable: {top:.0f} alerts/s; measured at 50 %: {rate:.0f} alerts/s, "
        f"{len(half.ids)} alerts, {half.missing} missing, {duplicates} duplicated"
    )
    values = half.values() or [0.0]
    print(
        f"receiver CPU: {half.cpu_per_alert_ms:.3f} ms per alert "
        f"({half.cpu_share:.0%} of a core); baseline {bare_ms:.3f} ms; "
        f"the host took {half.steal:.0%} of the machine's CPU (steal)"
    )
    print(
        f"end to end (notification -> sink answered) at 50 %: p50 "
        f"{percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
        f"max {max(values):.1f} ms"
    )
    slow_values = slow.values() or [0.0]
    bound = LATENCY_SLACK_MS + GRAPH_LATENCY_MS + SINK_LATENCY_MS
    held = slow.delivered_in_time and percentile(slow_values, 99) <= bound
    print(
        f"real-world latencies (Graph {GRAPH_LATENCY_MS} ms, sink {SINK_LATENCY_MS} ms) at "
        f"{rate:.0f} alerts/s: {len(slow.ids)} alerts, {slow.missing} missing, p50 "
        f"{percentile(slow_values, 50):.1f} ms, p99 {percentile(slow_values, 99):.1f} ms "
        f"(bound {bound:.0f} ms: {'held' if held else 'NOT held'}; steal {slow.steal:.0%})"
    )
    if half.missing or slow.missing or duplicates or not half.latencies:
        print("error: alerts lost or duplicated", file=sys.stderr)
        return 1
    print(f"pipeline_cpu_ratio={half.cpu_per_alert_ms / bare_ms:.2f}")
    print(f"e2e_p99_ms={percentile(values, 99):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

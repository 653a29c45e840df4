"""Poll scale benchmark: a thousand tenants polled every 10 s by 1, then 2 worker processes.

An MSSP with 1,000 tenants polled for alerts_v2 and incidents every 10 s needs about 200
Graph GETs a second; at Graph's ~150 ms an answer that is ~30 reads in flight at all times.
The scheduler's leader only queues poll jobs when due; the workers read them
(receiver.pipeline.poll). This starts a private Redis, the simulator (throttling off, every
Graph call held by its ``graph_latency`` fault, 150 ms by default), one `receiver scheduler`
and `receiver worker` processes, with a recording webhook in this process. The simulator gets
``--tenants`` new tenants. For each worker count of ``--workers`` (default 1 then 2: the
second phase starts one more worker beside the first), alerts_v2 and incidents change at
random moments in random tenants for ``--duration`` seconds (a Poisson process of ``--rate``
changes a second through the control API, as in tests.benchmarks.poll).

Per phase: lag p50/p99 from each delivered version's ``lastUpdateDateTime`` (simulator clock)
to its arrival; Graph GETs a second (the simulator's own count of /security requests); the CPU
of every worker, the scheduler, the simulator and Redis (share of one core); poll jobs the
leader found still running when due again; an estimate of the capacity from the CPU (the
Graph GETs a second served divided by the busiest worker's share of a core); and the capacity
measured: ``--backlog`` poll jobs put on the stream at once (Graph answering at once, each job
one GET that finds nothing), drained by the workers as fast as they can. On this machine the
workers share its cores with the simulator and Redis, whose CPU is printed beside it.

    .venv/bin/python -m tests.benchmarks.poll_scale [--tenants 1000] [--duration 180]

Last line: poll_scale_lag_p99_s=<value> for the last phase (2 workers): target <= 12 s, and
the capacity of 2 workers >= 1.7x that of 1 where the machine has the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks._common import add_poll_load_options
from tests.benchmarks.pipeline import cpu_seconds, parse_time, percentile
from tests.benchmarks.poll import (
    Changes,
    Recorder,
    _load,
    _metric,
    _ok,
    wait_for_last_versions,
)
from tests.fixtures.deploy import (
    ROUTE_ALL_TO_HOOK,
    Processes,
    Simulator,
    receiver_config,
    role_command,
    simulator_tenants,
    webhook,
    write_config,
)
from tests.fixtures.redis_server import free_port, private_redis


class Role:
    """A receiver process with its own config (its own metrics port), ready once its metrics
    answer."""

    def __init__(
        self, name: str, role: str, base: dict[str, Any], tmp: Path, procs: Processes
    ) -> None:
        self.name = name
        self.port = free_port()
        config = {**base, "metrics": {"port": self.port}}
        path = write_config(tmp / f"{name}.yaml", config, routes=ROUTE_ALL_TO_HOOK)
        self.proc = procs.start(
            name,
            role_command(role, path),
            ready_url=f"http://127.0.0.1:{self.port}/metrics",
            ready_timeout_s=120,
            stop_timeout_s=30,
        )

    def metrics(self) -> str:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return ""

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


def _polls_done(roles: list[Role]) -> float:
    return sum(_metric(r.metrics(), "receiver_poll_jobs_total") for r in roles)


def _phase(
    args: argparse.Namespace,
    n: int,
    workers: list[Role],
    scheduler: Role,
    others: dict[str, int],
    sim: httpx.Client,
    recorder: Recorder,
    tenants: list[str],
    rng: random.Random,
) -> dict[str, Any]:
    """One measured period with ``n`` workers running; returns its figures."""
    # Warm-up: every (tenant, source) polled at least once by these workers since they
    # started (tokens fetched, watermarks set), then a few seconds more.
    units = 2 * len(tenants)
    before = _polls_done(workers)
    deadline = time.monotonic() + 180
    while _polls_done(workers) - before < units:
        if time.monotonic() > deadline:
            raise RuntimeError("the workers never finished a first round of polls")
        time.sleep(0.5)
    # Then steady: a new worker first gets a token for each tenant it polls (MSAL, in a few
    # threads), holding its jobs meanwhile; measure once no source waited on its last poll
    # for --steady-s.
    waited = time.monotonic()
    skipped = _metric(scheduler.metrics(), "receiver_poll_jobs_skipped_total")
    while args.steady_s and time.monotonic() < deadline + 60:
        time.sleep(args.steady_s)
        now_skipped = _metric(scheduler.metrics(), "receiver_poll_jobs_skipped_total")
        if now_skipped == skipped:
            break
        skipped = now_skipped
    print(
        f"({n} worker{'s' if n > 1 else ''}: steady after {time.monotonic() - waited:.0f} s "
        "of warm-up beyond the first round)"
    )
    skew = float(_ok(sim.get("/clock"))["offsetSeconds"])
    _ok(sim.delete("/counters"))
    cpu0 = {r.name: r.cpu() for r in [*workers, scheduler]}
    cpu0.update({name: cpu_seconds(pid) for name, pid in others.items()})
    skipped0 = _metric(scheduler.metrics(), "receiver_poll_jobs_skipped_total")
    changes = Changes()
    started = time.monotonic()
    start_wall = time.time()
    next_at = started + rng.expovariate(args.rate)
    while next_at < started + args.duration:
        time.sleep(max(0.0, next_at - time.monotonic()))
        changes.change(sim, rng.choice(tenants), rng)
        next_at += rng.expovariate(args.rate)
    time.sleep(max(0.0, started + args.duration - time.monotonic()))
    elapsed = time.monotonic() - started
    end_wall = time.time()
    counters = _ok(sim.get("/counters"))
    cpu = {r.name: r.cpu() - cpu0[r.name] for r in [*workers, scheduler]}
    cpu.update({name: cpu_seconds(pid) - cpu0[name] for name, pid in others.items()})
    skipped = _metric(scheduler.metrics(), "receiver_poll_jobs_skipped_total") - skipped0
    load = _load()
    # Every changed alert's last version must arrive.
    missing = wait_for_last_versions(sim, changes, recorder, 2 * args.interval + 30)
    lags = [
        arrived - (parse_time(version) - skew)
        for (_, _, version), arrived in list(recorder.arrived.items())
        if start_wall <= parse_time(version) - skew <= end_wall
    ]
    gets = counters.get("graph.security", 0) / elapsed
    worker_cpu = sum(cpu[r.name] for r in workers) / elapsed
    busiest = max(cpu[r.name] for r in workers) / elapsed
    ms_per_get = worker_cpu * 1000 / gets if gets else float("nan")
    return {
        "workers": n,
        "changes": changes.made,
        "versions": len(lags),
        "missing": len(missing),
        "gets": gets,
        "lags": lags,
        "cpu": {k: v / elapsed for k, v in cpu.items()},
        "worker_cpu": worker_cpu,
        "busiest": busiest,
        "ms_per_get": ms_per_get,
        # The deployment saturates when its busiest worker has a core's worth of work.
        "capacity": gets / busiest if busiest else 0.0,
        "skipped": skipped,
        "load": load,
        "throttled": counters.get("graph.429", 0),
    }


def _drain(
    args: argparse.Namespace,
    workers: list[Role],
    others: dict[str, int],
    sim: httpx.Client,
    redis_url: str,
    tenants: list[str],
) -> dict[str, float]:
    """The capacity, measured: a backlog of ``--backlog`` poll jobs put straight on the poll
    stream (watermarks in the future, so each is one GET that finds nothing), Graph answering
    at once, drained by the workers as fast as their CPU (and the machine) lets them."""
    import redis

    from receiver.store.keys import Keys

    keys = Keys()
    client = redis.Redis.from_url(redis_url)
    try:
        _ok(sim.post("/faults", json={"kind": "graph_latency", "ms": 0}))
        rng = random.Random(args.seed)
        cpu0 = {r.name: r.cpu() for r in workers}
        cpu0.update({name: cpu_seconds(pid) for name, pid in others.items()})
        gets0 = _ok(sim.get("/counters")).get("graph.security", 0)
        done0 = _polls_done(workers)
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for _ in range(args.backlog):
            pipe.xadd(
                keys.poll_jobs,
                {
                    "v": "1",
                    "tenant_id": rng.choice(tenants),
                    "source": rng.choice(["alerts_v2", "incidents"]),
                    "watermark": "2099-01-01T00:00:00.000000Z",
                    "due_ms": "0",
                },
            )
        last = pipe.execute()[-1]
        # Done when no entry up to the backlog's last is left (acknowledged jobs are deleted);
        # the schedule's own jobs go on beside it.
        deadline = started + 600
        while client.xrange(keys.poll_jobs, "-", last, count=1):
            if time.monotonic() > deadline:
                raise RuntimeError("the backlog of poll jobs was not drained in 10 minutes")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        done = _polls_done(workers) - done0
        gets = _ok(sim.get("/counters")).get("graph.security", 0) - gets0
        cpu = {r.name: (r.cpu() - cpu0[r.name]) / elapsed for r in workers}
        cpu.update(
            {name: (cpu_seconds(pid) - cpu0[name]) / elapsed for name, pid in others.items()}
        )
    finally:
        _ok(sim.post("/faults", json={"kind": "graph_latency", "ms": args.latency_ms}))
        client.close()
    return {
        "jobs_per_s": done / elapsed,
        "gets_per_s": gets / elapsed,
        "seconds": elapsed,
        **{f"cpu_{k}": v for k, v in cpu.items()},
    }


def _report(p: dict[str, Any], tenants: int, interval: float) -> None:
    n = p["workers"]
    lags = p["lags"]
    print(f"--- {n} worker{'s' if n > 1 else ''} ---")
    print(
        f"changes: {p['changes']}; versions delivered: {p['versions']}, "
        f"{p['missing']} alerts' last version missing"
    )
    if lags:
        print(
            f"lag (lastUpdateDateTime -> sink): p50 {percentile(lags, 50):.2f} s, "
            f"p99 {percentile(lags, 99):.2f} s, max {max(lags):.2f} s "
            f"(the wait for the next poll alone: p50 {interval / 2:.2f}, "
            f"p99 {interval * 0.99:.2f})"
        )
    need = 2 * tenants / interval
    print(
        f"Graph: {p['gets']:.1f} GETs/s (the schedule asks {need:.0f}/s); "
        f"{p['skipped']:.0f} times a source was due while its last poll ran; "
        f"{p['throttled']} throttled"
    )
    cpu = ", ".join(f"{k} {v * 100:.0f}%" for k, v in p["cpu"].items())
    print(f"CPU (% of one core): {cpu}")
    print(
        f"workers: {p['worker_cpu'] * 100:.0f}% of a core in all (busiest "
        f"{p['busiest'] * 100:.0f}%), {p['ms_per_get']:.2f} ms of CPU per Graph GET; capacity "
        f"(GETs/s when the busiest worker has a whole core): {p['capacity']:.0f} GETs/s = "
        f"{p['capacity'] * interval / 2:.0f} tenants at {interval:g} s"
    )
    print(f"machine load during the phase: {p['load']}")
    d = p["drain"]
    cpu = ", ".join(f"{k[4:]} {v * 100:.0f}%" for k, v in d.items() if k.startswith("cpu_"))
    print(
        f"capacity (a backlog of poll jobs drained, Graph answering at once): "
        f"{d['jobs_per_s']:.0f} polls/s, {d['gets_per_s']:.0f} GETs/s in "
        f"{d['seconds']:.1f} s; CPU: {cpu}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_poll_load_options(parser, tenants=1000, duration=180.0, rate=10.0)
    parser.add_argument(
        "--workers", default="1,2", help="worker counts, one phase each, in order (default 1,2)"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=6000,
        help="poll jobs queued at once to measure the capacity (default 6000)",
    )
    parser.add_argument(
        "--steady-s",
        type=float,
        default=10.0,
        help="warm-up: measure once no poll waited on its last for this long "
        "(default 10; 0: right after the first round)",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        help="keep the receiver's logs (WARNING and up) in this directory",
    )
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, as it comes
    counts = [int(n) for n in args.workers.split(",")]
    if counts != sorted(counts) or counts[0] < 1:
        parser.error("--workers: increasing counts, e.g. 1,2")
    rng = random.Random(args.seed)
    print(f"machine load at start: {_load()}")
    phases: list[dict[str, Any]] = []
    with (
        private_redis() as redis_server,
        tempfile.TemporaryDirectory() as tmp_dir,
        Recorder() as recorder,
    ):
        tmp = Path(tmp_dir)
        logs = args.logs or tmp
        logs.mkdir(parents=True, exist_ok=True)
        site = Simulator(tmp)
        with Processes(logs) as procs:
            simulator = procs.add(site.proc("--no-throttle", logs=logs, stop_timeout_s=30))
            with httpx.Client(
                base_url=f"{site.url}/_sim", verify=site.ca, trust_env=False, timeout=60
            ) as sim:
                made = _ok(
                    sim.post("/tenants", json={"count": args.tenants, "credential": "secret"})
                )["tenants"]
                poll = {"alerts_v2": True, "incidents": True, "interval_s": args.interval}
                tenants = simulator_tenants(made, "t{:04d}", poll=poll)
                base = receiver_config(
                    redis_server.url,
                    site,
                    web={"public_url": "http://127.0.0.1:9", "allow_http": True},
                    tenants=tenants,
                    sinks=[webhook("hook", f"http://127.0.0.1:{recorder.port}/hook")],
                    log_level="WARNING" if args.logs else "ERROR",
                )
                _ok(sim.post("/faults", json={"kind": "graph_latency", "ms": args.latency_ms}))
                assert redis_server.proc is not None
                others = {"simulator": simulator.pid, "redis": redis_server.proc.pid}
                scheduler = Role("scheduler", "scheduler", base, tmp, procs)
                ids = [t["tenant_id"] for t in tenants]
                workers: list[Role] = []
                for n in counts:
                    while len(workers) < n:
                        name = f"worker-{len(workers) + 1}"
                        workers.append(Role(name, "worker", base, tmp, procs))
                    phase = _phase(args, n, workers, scheduler, others, sim, recorder, ids, rng)
                    phase["drain"] = _drain(args, workers, others, sim, redis_server.url, ids)
                    phases.append(phase)
                    _report(phase, args.tenants, args.interval)
    last = phases[-1]
    if len(phases) > 1:
        first = phases[0]
        one, two = first["drain"]["jobs_per_s"], last["drain"]["jobs_per_s"]
        busy = sum(v for k, v in last["drain"].items() if k.startswith("cpu_"))
        print(
            f"capacity {last['workers']} workers / {first['workers']}: {two / one:.2f}x "
            f"measured ({one:.0f} -> {two:.0f} polls/s; the machine has {_cores()} cores and "
            f"the drain kept {busy * 100:.0f}% of a core busy in workers, simulator and "
            f"Redis); {last['capacity'] / first['capacity']:.2f}x from CPU per GET at the "
            f"schedule's load"
        )
    if any(p["missing"] for p in phases) or not last["lags"]:
        print("error: versions missing or nothing delivered", file=sys.stderr)
        return 1
    print(f"poll_scale_lag_p99_s={percentile(last['lags'], 99):.2f}")
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())

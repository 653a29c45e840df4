"""One run of a profile: start everything, apply load and faults, drain, match, report."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from receiver.store.keys import Keys
from tests.fixtures.redis_server import private_redis
from tests.reliability._deploy import TENANT, Deployment, Topology
from tests.reliability._faults import FaultContext, run_fault
from tests.reliability._profiles import Fault, Profile
from tests.reliability._proxy import Proxy
from tests.reliability._report import Report, hook_result, percentile, ticket_result
from tests.reliability._sinks import SinkServer

HOOKS = ["hook", "flaky"]  # "hook" stays healthy; "flaky" is the one the faults break
TICK_S = 0.1
UPDATE_AFTER_S = 3.0


def _epoch(text: str) -> float:
    head, _, rest = text.replace("Z", "").partition(".")
    frac = float("0." + rest) if rest else 0.0
    return datetime.fromisoformat(head + "+00:00").timestamp() + frac


class _Load:
    """Creates alerts at the profile's rate and updates some; remembers when."""

    def __init__(self, deployment: Deployment, profile: Profile) -> None:
        assert deployment.control is not None
        self.control = deployment.control
        self.profile = profile
        self.push: dict[str, float] = {}
        self.poll: dict[str, float] = {}
        self.updates: dict[str, float] = {}
        self._due_updates: list[tuple[float, str]] = []
        self._created = 0

    def tick(self, started: float, now: float) -> None:
        want = int((now - started) * self.profile.rate)
        n = want - len(self.push)
        if n > 0:
            at = time.time()
            for alert_id in self.control.create_alerts(TENANT, n)["ids"]:
                self.push[alert_id] = at
                self._created += 1
                if self._created % self.profile.update_every == 0:
                    self._due_updates.append((now + UPDATE_AFTER_S, alert_id))
        want_v2 = int((now - started) / self.profile.v2_every_s)
        if want_v2 > len(self.poll):
            at = time.time()
            for alert_id in self.control.create_alerts(TENANT, want_v2 - len(self.poll), kind="v2")[
                "ids"
            ]:
                self.poll[alert_id] = at
        while self._due_updates and self._due_updates[0][0] <= now:
            _, alert_id = self._due_updates.pop(0)
            self.control.update_alert(TENANT, alert_id, {"status": "inProgress"})
            self.updates[alert_id] = time.time()


class _Acks:
    """The simulator's record of its POSTs to the web, read as it goes (it keeps a window)."""

    def __init__(self, deployment: Deployment) -> None:
        assert deployment.control is not None
        self.http = deployment.control.http
        self.after = 0
        self.rows: list[tuple[float, int | None, float]] = []  # (time, status, ms)

    def collect(self) -> None:
        with contextlib.suppress(Exception):
            rows = self.http.get(
                "/deliveries", params={"kind": "notification", "after": self.after}
            ).json()
            for d in rows["deliveries"]:
                self.after = max(self.after, int(d["sequence"]))
                self.rows.append((_epoch(d["time"]), d["statusCode"], float(d["durationMs"])))

    def percentile(self, start: float, end: float, p: float) -> float:
        return percentile(
            [
                ms
                for t, status, ms in self.rows
                if start <= t <= end and status is not None and status < 300
            ],
            p,
        )


def _poisoned(client: Any, keys: Keys, most: int = 5) -> list[str]:
    """What the poison stream holds, for the report: each entry's stage, attempts and error."""
    rows = client.xrange(keys.poison, count=most)
    return [
        f"{f.get(b'stream', b'?').decode()} after {f.get(b'attempts', b'?').decode()} "
        f"attempt(s): {f.get(b'error', b'?').decode()}"
        for _, f in rows
    ]


def _leftovers(redis_url: str, cluster: bool) -> tuple[dict[str, int], list[str]]:
    keys = Keys()
    client: Any = (
        redis.RedisCluster.from_url(redis_url) if cluster else redis.Redis.from_url(redis_url)
    )
    try:
        out = {"poison stream": int(client.xlen(keys.poison))}
        for name in [*HOOKS, "tickets"]:
            out[f"dlq:{name}"] = int(client.xlen(keys.dlq(name)))
        return out, _poisoned(client, keys)
    finally:
        client.close()


def _drained(load: _Load, sinks: SinkServer, deleted: set[str]) -> bool:
    expected = (set(load.push) | set(load.poll)) - deleted
    tickets = sinks.tickets_per_alert()
    if not expected <= set(tickets):
        return False
    for name in HOOKS:
        arrivals = list(sinks.hooks[name].arrivals)
        if not expected <= {a.alert_id for a in arrivals if a.first_seen}:
            return False
        if not set(load.updates) <= {a.alert_id for a in arrivals if a.status == "inProgress"}:
            return False
    return True


def run(profile: Profile, *, log_dir: Path | None = None, progress: Any = print) -> Report:
    began = time.monotonic()
    report = Report(profile.name)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reliability-")))
        if log_dir is not None:
            work = log_dir
            work.mkdir(parents=True, exist_ok=True)
        redis_server = stack.enter_context(
            private_redis(work / "redis", appendonly=True, extra_args=("--appendfsync", "always"))
        )
        sinks = stack.enter_context(SinkServer(HOOKS))
        deployment = Deployment(
            work, redis_url=redis_server.url, topology=Topology(), sinks_url=sinks.url, hooks=HOOKS
        )
        stack.callback(deployment.stop)
        deployment.start_simulator()
        proxy = stack.enter_context(Proxy(deployment.web_ports))
        deployment.start_receiver(public_url=proxy.url)
        subscription_id = deployment.wait_subscription()
        progress(
            f"deployment up in {time.monotonic() - began:.0f} s: "
            f"{', '.join(deployment.procs)}; load {profile.rate:g}/s for "
            f"{profile.duration_s:g} s"
        )

        load, acks = _Load(deployment, profile), _Acks(deployment)
        ctx = FaultContext(deployment, redis_server, sinks, subscription_id)
        faults = sorted(profile.faults, key=lambda f: f.at_s)
        fault_log: list[str] = []  # in the order they happened

        def inject(start: float, fault: Fault) -> None:
            time.sleep(max(0.0, start + fault.at_s - time.monotonic()))
            t = time.monotonic() - start
            try:
                text = run_fault(ctx, fault.kind, fault.args)
            except Exception as exc:  # reported, and the run fails on it
                text = f"FAILED {fault.kind}: {type(exc).__name__}: {exc}"
                report.failures.append(text)
            fault_log.append(f"t={t:5.1f}s {text}")
            progress(fault_log[-1])

        started = time.monotonic()
        wall_start = time.time()
        # One thread per fault: a sink down for minutes does not hold back the next fault.
        injectors = [
            threading.Thread(target=inject, args=(started, f), daemon=True) for f in faults
        ]
        for thread in injectors:
            thread.start()
        rss_start: dict[str, int] = {}
        pids: dict[str, int] = {}
        last_collect = started
        while (now := time.monotonic()) - started < profile.duration_s:
            try:
                load.tick(started, now)
            except Exception as exc:  # the simulator itself must stay up
                report.failures.append(f"load: {type(exc).__name__}: {exc}")
                break
            if (
                profile.rss_from_s is not None
                and not rss_start
                and now - started >= profile.rss_from_s
            ):
                rss_start = deployment.rss()
                pids = {n: p.pid for n, p in deployment.procs.items()}
                progress(f"RSS baseline taken at t={now - started:.0f}s")
            if now - last_collect > 5:
                acks.collect()
                last_collect = now
            time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
        progress(
            f"load done: {len(load.push)} pushed, {len(load.poll)} polled, "
            f"{len(load.updates)} updated; draining"
        )
        for thread in injectors:
            thread.join(
                timeout=max(
                    0.0, started + profile.duration_s + profile.drain_timeout_s - time.monotonic()
                )
            )
        deadline = time.monotonic() + profile.drain_timeout_s
        deleted = set(ctx.deleted)
        while time.monotonic() < deadline and not _drained(load, sinks, deleted):
            time.sleep(0.25)
        time.sleep(1.0)  # late duplicates would arrive now
        acks.collect()
        if profile.rss_from_s is not None:
            end = deployment.rss()
            same = {
                n: kb
                for n, kb in end.items()
                if n in rss_start and deployment.procs[n].pid == pids.get(n)
            }
            report.rss_kb = {"start": {n: rss_start[n] for n in same}, "end": same}

        expected = (set(load.push) | set(load.poll)) - deleted
        for name in HOOKS:
            report.sinks.append(
                hook_result(name, expected, set(load.updates), list(sinks.hooks[name].arrivals))
            )
        report.sinks.append(ticket_result(expected, sinks.tickets_per_alert()))
        arrived: dict[str, float] = {}
        for a in sinks.hooks["hook"].arrivals:
            if a.first_seen:
                arrived.setdefault(a.alert_id, a.at)
        latencies = [(arrived[i] - t) * 1000 for i, t in load.push.items() if i in arrived]
        if latencies:
            report.latency_ms = {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "p99": percentile(latencies, 99),
                "max": max(latencies),
            }
        polled = [(arrived[i] - t) * 1000 for i, t in load.poll.items() if i in arrived]
        if polled:
            report.latency_ms["poll_p99"] = percentile(polled, 99)
        b0, b1 = profile.baseline
        f0, f1 = profile.failing
        report.ack_ms = {
            f"{window}_p{p}": acks.percentile(wall_start + a, wall_start + b, p)
            for window, (a, b) in (("baseline", (b0, b1)), ("failing", (f0, f1)))
            for p in (95, 99)
        }
        answers: dict[str, int] = {}
        for _, status, _ in acks.rows:
            key = str(status) if status is not None else "no answer"
            answers[key] = answers.get(key, 0) + 1
        report.web_answers = answers
        report.created_push, report.created_poll = len(load.push), len(load.poll)
        report.updated, report.deleted = len(load.updates), len(deleted)
        report.faults = sorted(fault_log)
        report.unexpected_exits = [e for p in deployment.procs.values() for e in p.unexpected_exits]
        with contextlib.suppress(Exception):
            report.leftovers, report.poisoned = _leftovers(redis_server.url, cluster=False)
    report.wall_s = time.monotonic() - began
    report.judge()
    return report

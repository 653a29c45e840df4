"""Carrying out one fault of a profile, in a thread beside the load.

Each returns a one-line description for the report. Faults that end (a sink down for a
while, a killed role) end inside the call, so they run one after the other.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from receiver.pipeline.poll import POLL_GROUP
from receiver.store.keys import Keys
from tests.fixtures.redis_server import RedisServer
from tests.reliability._deploy import TENANT, Deployment
from tests.reliability._sinks import SinkServer

RESTART_AFTER_S = 2.0


@dataclass
class FaultContext:
    deployment: Deployment
    redis: RedisServer
    sinks: SinkServer
    subscription_id: str
    deleted: list[str] = field(default_factory=list)


def run_fault(ctx: FaultContext, kind: str, args: dict[str, Any]) -> str:
    control = ctx.deployment.control
    assert control is not None
    if kind in ("sink_down", "sink_slow"):
        state = ctx.sinks.hooks[args["sink"]]
        if kind == "sink_down":
            state.down = True
        else:
            state.slow_s = float(args["delay_s"])
        time.sleep(float(args["seconds"]))
        state.down, state.slow_s = False, 0.0
        return (
            f"sink {args['sink']} {'down (503)' if kind == 'sink_down' else 'slow'} "
            f"for {args['seconds']} s"
        )
    if kind == "kill":
        proc = ctx.deployment.procs[args["role"]]
        old = proc.pid
        proc.kill9()
        time.sleep(RESTART_AFTER_S)
        proc.start()
        return f"kill -9 {proc.name} (pid {old}), restarted after {RESTART_AFTER_S:g} s"
    if kind == "kill_mid_poll":
        return _kill_mid_poll(ctx, args)
    if kind == "redis_restart":
        ctx.redis.kill()
        time.sleep(RESTART_AFTER_S)
        ctx.redis.start()
        return f"kill -9 redis (AOF, appendfsync always), restarted after {RESTART_AFTER_S:g} s"
    if kind == "redis_wipe":
        ctx.redis.kill()
        for child in ctx.redis.data_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child.name != "redis.log":
                child.unlink()
        time.sleep(RESTART_AFTER_S)
        ctx.redis.start()
        return "kill -9 redis and restart it empty (as without persistence)"
    if kind in ("graph_429", "duplicate", "reorder"):
        name = {"duplicate": "duplicate_notifications", "reorder": "reorder_notifications"}.get(
            kind, kind
        )
        control.inject_fault(name, **args)
        return f"{name} x{args.get('count')}"
    if kind == "deleted_alert":
        alert_id = control.create_alert(TENANT)
        response = control.http.request(
            "DELETE", f"/alerts/{alert_id}", json={"tenantId": TENANT, "notify": "updated"}
        )
        response.raise_for_status()
        ctx.deleted.append(alert_id)
        return f"alert {alert_id} deleted, a notification for it sent after"
    if kind == "lifecycle":
        subs = control.subscriptions(TENANT)  # the current one: it may have been recreated
        control.lifecycle(str(subs[0]["id"]) if subs else ctx.subscription_id, args["event"])
        return f"lifecycle {args['event']}"
    raise ValueError(f"unknown fault {kind!r}")


def _kill_mid_poll(ctx: FaultContext, args: dict[str, Any]) -> str:
    """SIGKILL a worker while it holds a poll job (read from Redis: the job's entry pending
    to that worker's consumer), then check that another worker took the job over and ended
    it. Graph answers slowly until the kill, so the poll is caught in flight."""
    control = ctx.deployment.control
    assert control is not None
    proc = ctx.deployment.procs[args["role"]]
    old = proc.pid
    consumer = f"{socket.gethostname()}-{old}"  # the consumer loop's default name
    keys = Keys()
    client = redis.Redis.from_url(ctx.redis.url)
    try:
        control.inject_fault("graph_latency", ms=int(args.get("latency_ms", 1000)))
        job: str | None = None
        try:
            deadline = time.monotonic() + 30
            while job is None and time.monotonic() < deadline:
                rows = client.xpending_range(
                    keys.poll_jobs, POLL_GROUP, min="-", max="+", count=1, consumername=consumer
                )
                job = str(rows[0]["message_id"], "ascii") if rows else None  # type: ignore[arg-type]
                if job is None:
                    time.sleep(0.005)
            if job is None:
                raise RuntimeError(f"{proc.name} took no poll job within 30 s")
            proc.kill9()
            killed_at = time.monotonic()
        finally:
            control.inject_fault("graph_latency", ms=0)
        time.sleep(RESTART_AFTER_S)
        proc.start()
        deadline = time.monotonic() + 60
        while client.xrange(keys.poll_jobs, job, job) and time.monotonic() < deadline:
            time.sleep(0.1)
        if client.xrange(keys.poll_jobs, job, job):
            raise RuntimeError(f"the poll job {job} of the killed {proc.name} was never taken over")
        took = time.monotonic() - killed_at
    finally:
        client.close()
    return (
        f"kill -9 {proc.name} (pid {old}) mid-poll (job {job} pending to it), "
        f"restarted after {RESTART_AFTER_S:g} s; its job taken over and done "
        f"{took:.1f} s after the kill"
    )

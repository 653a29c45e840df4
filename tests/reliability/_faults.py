"""Carrying out one fault of a profile, in a thread beside the load.

Each returns a one-line description for the report. Faults that end (a sink down for a
while, a killed role) end inside the call, so they run one after the other.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from typing import Any

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
        return f"sink {args['sink']} {'down (503)' if kind == 'sink_down' else 'slow'} " \
               f"for {args['seconds']} s"
    if kind == "kill":
        proc = ctx.deployment.procs[args["role"]]
        old = proc.pid
        proc.kill9()
        time.sleep(RESTART_AFTER_S)
        proc.start()
        return f"kill -9 {proc.name} (pid {old}), restarted after {RESTART_AFTER_S:g} s"
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
        name = {"duplicate": "duplicate_notifications",
                "reorder": "reorder_notifications"}.get(kind, kind)
        control.inject_fault(name, **args)
        return f"{name} x{args.get('count')}"
    if kind == "deleted_alert":
        alert_id = control.create_alert(TENANT)
        response = control.http.request("DELETE", f"/alerts/{alert_id}",
                                        json={"tenantId": TENANT, "notify": "updated"})
        response.raise_for_status()
        ctx.deleted.append(alert_id)
        return f"alert {alert_id} deleted, a notification for it sent after"
    if kind == "lifecycle":
        subs = control.subscriptions(TENANT)  # the current one: it may have been recreated
        control.lifecycle(str(subs[0]["id"]) if subs else ctx.subscription_id, args["event"])
        return f"lifecycle {args['event']}"
    raise ValueError(f"unknown fault {kind!r}")

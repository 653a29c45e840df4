"""The control API's conditions of the service: injected faults, throttling, the virtual
clock, and the counts of what happened (with each notification URL's throttling state)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from receiver.simulator.clock import iso
from receiver.simulator.control_http import json_response, read_body
from receiver.simulator.faults import Faults

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator


async def get_faults(request: Request, sim: Simulator) -> Response:
    return json_response(sim.faults.describe())


async def inject_fault(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    sim.faults.inject(str(body.get("kind")), body)
    return json_response(sim.faults.describe(), status=201)


async def clear_faults(request: Request, sim: Simulator) -> Response:
    sim.faults = Faults()
    return Response(status_code=204)


async def throttle(request: Request, sim: Simulator) -> Response:
    if request.method == "POST":
        body = await read_body(request)
        if "enabled" in body:
            sim.throttle.enabled = bool(body["enabled"])
        if body.get("reset"):
            sim.throttle.reset()
    rules = {
        name: {"limit": r.limit, "windowSeconds": r.window_s}
        for name, r in sim.throttle.rules.items()
    }
    return json_response({"enabled": sim.throttle.enabled, "rules": rules})


def _subscription_count(sim: Simulator) -> int:
    return sum(len(t.data.subscriptions) for t in sim.directory.tenants.values())


async def get_clock(request: Request, sim: Simulator) -> Response:
    offset = sim.clock.offset.total_seconds()
    return json_response({"now": iso(sim.clock.now()), "offsetSeconds": offset})


async def advance_clock(request: Request, sim: Simulator) -> Response:
    body = await read_body(request)
    delta = dt.timedelta(
        seconds=float(body.get("seconds", 0)),
        minutes=float(body.get("minutes", 0)),
        hours=float(body.get("hours", 0)),
        days=float(body.get("days", 0)),
    )
    before = _subscription_count(sim)
    now = sim.advance_clock(delta)
    return json_response(
        {
            "now": iso(now),
            "offsetSeconds": sim.clock.offset.total_seconds(),
            "expiredSubscriptions": before - _subscription_count(sim),
        }
    )


async def counters(request: Request, sim: Simulator) -> Response:
    """Named counts, and under "endpoints" each notification URL's throttling state
    (`normal`, `delayed`, `dropped`) with the answers counted in its current window."""
    body: dict[str, Any] = dict(sorted(sim.counters.items()))
    body["endpoints"] = sim.notifier.endpoints.describe()
    return json_response(body)


async def reset_counters(request: Request, sim: Simulator) -> Response:
    sim.counters.clear()
    return Response(status_code=204)

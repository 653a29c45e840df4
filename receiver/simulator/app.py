"""`create_app(config)`: the Starlette app serving Entra ID, Graph (/v1.0 and /beta) and /_sim."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from receiver.simulator import (
    control,
    entra,
    graph_batch,
    graph_scores,
    graph_security,
    graph_subscriptions,
)
from receiver.simulator.config import SimulatorConfig
from receiver.simulator.core import Simulator

FULL_GC_EVERY_S = 600.0  # what keep_out_of_gc froze is looked at whole this often


async def _unknown_segment(request: Request) -> Response:
    segment = request.path_params["path"].split("/")[0]
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": "BadRequest",
            "message": f"Resource not found for the segment '{segment}'.",
            "innerError": {
                "request-id": request_id,
                "client-request-id": request.headers.get("client-request-id", request_id),
            },
        }
    }
    return Response(json.dumps(body), status_code=400, media_type="application/json")


def graph_routes() -> list[BaseRoute]:
    return [
        *graph_batch.routes,
        *graph_subscriptions.routes,
        *graph_security.routes,
        *graph_scores.routes,
        Route("/{path:path}", _unknown_segment, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    ]


async def keep_out_of_gc(every_s: float, *, full_every_s: float = FULL_GC_EVERY_S) -> None:
    """Keep what the simulator stores out of the cyclic collector's sight, for as long as it
    runs (a process of its own: `receiver simulator`).

    The simulator keeps every alert it creates; a benchmark makes tens of thousands. The
    collector's full collections walk all of them, and grew to 250 ms stops of the simulator
    (Graph's stand-in) in the pipeline benchmark's later phases: the tail of what it measured
    was the simulator's. Every ``every_s`` this collects the young generations, then freezes
    what is left (gc.freeze: O(1), moves every tracked object to the permanent generation).
    Frozen objects are still freed by reference counting; only a cycle among objects alive at
    a freeze is not collected until the next full pass, once every ``full_every_s``
    (gc.unfreeze and a full collection)."""
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(every_s)
        if time.monotonic() - last_full >= full_every_s:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        else:
            gc.collect(1)
        gc.freeze()


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    sim = Simulator(config or SimulatorConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.notifier.start()
        every_s = sim.config.gc_freeze_every_s
        housekeeping = asyncio.create_task(keep_out_of_gc(every_s)) if every_s > 0 else None
        try:
            yield
        finally:
            if housekeeping is not None:
                housekeeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await housekeeping
            await sim.notifier.stop()

    routes: list[BaseRoute] = [
        Mount("/v1.0", routes=graph_routes()),
        Mount("/beta", routes=graph_routes()),
        *control.routes,
        *entra.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    return app

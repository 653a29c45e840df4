"""`create_app(config)`: the Starlette app serving Entra ID, Graph (/v1.0 and /beta) and /_sim."""

from __future__ import annotations

import contextlib
import json
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


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    sim = Simulator(config or SimulatorConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sim.notifier.start()
        try:
            yield
        finally:
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

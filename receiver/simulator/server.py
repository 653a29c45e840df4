"""The uvicorn server the simulator runs on, made to stop when told.

On shutdown uvicorn asks each connection to close and then waits for every one to go. An idle
keep-alive connection over TLS does not go: closing it starts a TLS shutdown that waits for the
client's close_notify (asyncio allows 30 s, and a client holding its pool open never sends
one), so `receiver simulator` sat in "Waiting for connections to close" after SIGTERM for as
long as any client kept a connection. Here, once shutdown starts, a connection with no request
in flight is aborted (its transport dropped without the TLS goodbye), checked every
`IDLE_CHECK_S` until the server is down; a request in flight may finish, for at most the
config's `timeout_graceful_shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import uvicorn

IDLE_CHECK_S = 0.05
GRACEFUL_SHUTDOWN_S = 5  # the longest a request in flight may hold the exit


def _idle(connection: Any) -> bool:
    cycle = getattr(connection, "cycle", None)
    return cycle is None or bool(getattr(cycle, "response_complete", False))


class SimulatorServer(uvicorn.Server):
    def abort_idle_connections(self) -> int:
        """Drop every connection that has no request in flight; how many were dropped."""
        aborted = 0
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and _idle(connection):
                transport.abort()
                aborted += 1
        return aborted

    async def _abort_idle_until_down(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            self.abort_idle_connections()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reaper = asyncio.get_running_loop().create_task(self._abort_idle_until_down())
        try:
            await super().shutdown(sockets)
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper

"""Running the admin app beside a role: uvicorn in a daemon thread with its own event loop.

Why a thread: every role can have it the same way (the web role's uvicorn owns the main
thread; `web --workers N` forks), and a slow page render never delays the role's own event
loop (webhook acks, deliveries). The socket is bound in the caller's thread, so a port in use
is a clear error at start, not a log line from a thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from receiver.config.settings import Settings

__all__ = ["AdminServer", "start_admin"]

_START_TIMEOUT_S = 10.0


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ValueError(f"admin.host {host}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ValueError(f"admin.port {port} on {host}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class AdminServer:
    """The admin app on ``admin.host:admin.port`` until :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        from receiver.admin.app import create_app

        self._socket = _bind(settings.admin.host, settings.admin.port)
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_keep_alive=5,
            )
        )
        self._thread = threading.Thread(target=self._run, name="admin-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> AdminServer:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            reason = (
                f"{type(self._error).__name__}: {self._error}" if self._error else "did not start"
            )
            raise ValueError(f"admin server on port {self.port}: {reason}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()


def start_admin(settings: Settings) -> AdminServer | None:
    """The admin server, started, when ``admin.port`` is set; ValueError when it cannot be."""
    if not settings.admin.port:
        return None
    return AdminServer(settings).start()

"""The HTTP transport under every httpx client of the product (Graph and the sinks).

It is httpx's own transport with one change underneath: the check httpcore's connection pool
makes before and after every request -- "is each idle connection still usable?" -- costs one
``poll()`` per connection instead of a walk through anyio's attribute tables. httpcore asks it
of every pooled connection twice per request, and anyio rebuilds those tables on each ask; under
load that was the largest single share of a worker's CPU (about 15 % at 200 alerts/s). The
answer is the same: a connection whose socket is readable while idle has been closed by the
server (or sent garbage) and is dropped.

The backend is set on httpcore's pool through one private attribute; ``fast_path_active``
says whether that worked, and a test checks it, so an httpx or httpcore upgrade that moves
the attribute fails loudly in the tests instead of silently costing CPU.
"""

# The stream and backend methods take `timeout` because httpcore's interface does.
# ruff: noqa: ASYNC109
from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["Transport", "fast_path_active"]

_SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | \
    tuple[int, int, None, int]


def _readable(sock: socket.socket | None) -> bool:
    """Whether reading would return at once (data, or the end of a closed connection)."""
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_inner", "_sock")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[_SocketOption] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address,
                                                     socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[_SocketOption] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class Transport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` (same arguments) with the cheap idle-connection check."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = getattr(self, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = _Backend()


def fast_path_active(transport: httpx.AsyncBaseTransport) -> bool:
    pool = getattr(transport, "_pool", None)
    return isinstance(getattr(pool, "_network_backend", None), _Backend)

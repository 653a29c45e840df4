"""The HTTP transport under every httpx client of the product (Graph and the sinks).

It is httpx's own transport (same arguments, same pool, same HTTP/1.1 and HTTP/2 code) on a
network backend of its own: plain asyncio (a ``Protocol`` on the event loop's transports,
asyncio's TLS) instead of httpcore's anyio backend. Under load the anyio layers were the
largest share of a worker's CPU after the socket writes themselves: a cancel scope and an
exception map around every read and write, TLS through anyio's memory-BIO stream, attribute
tables rebuilt on every "is this idle connection still usable?" check (httpcore asks it of
every pooled connection twice per request), and on Python 3.11 a ``getpid()`` system call in
every ``get_running_loop()`` those layers make (about 250 per alert).

Two further savings, both invisible on the wire:

- the idle check costs no system call: the connection's protocol is always reading, so data
  or the end of the connection that arrived while it was idle has been seen by the event
  loop, and such a connection (closed by the server, or sent garbage) is dropped, as before.
  With many pooled connections this was a ``poll()`` per connection per request (about 40
  per alert with 150 ms answers from Graph). A close that lands after the check is the same
  race it always was: the request fails as a network error, which the callers retry;
- an HTTP/1.1 request's pieces (headers, body, end) are written together when the response
  is first read, so a POST is one socket write (and one TLS record) instead of two. HTTP/1.1
  always reads the response after writing the request, so nothing waits on the buffer; an
  HTTP/2 connection (ALPN ``h2``, or HTTP/1.1 switched off) writes through at once, since
  there another request's reader may hold the connection.

The backend is set on httpcore's pool through one private attribute, and the pool's
bookkeeping pass is replaced by a linear one (:mod:`receiver.pool`); ``fast_path_active``
says whether both worked, and a test checks it, so an httpx or httpcore upgrade that moves
the attribute fails loudly in the tests instead of silently costing CPU.
"""

# The stream and backend methods take `timeout` because httpcore's interface does.
# ruff: noqa: ASYNC109
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

import httpcore
import httpx

from receiver.pool import LinearPool

__all__ = ["Client", "Transport", "fast_path_active"]

_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

# Reading pauses while this much is received and not yet read by httpcore.
_READ_HIGH_WATER = 1 << 20
# A write buffer above this goes out at once (a large request body is not held back).
_WRITE_COALESCE_MAX = 1 << 16


class _Protocol(asyncio.Protocol):
    """Received bytes, end of stream and write flow control for one connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.paused_reading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.paused_reading = True
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_coalesce", "_pending", "_proto", "_transport")

    def __init__(self, transport: asyncio.Transport, proto: _Protocol, *, coalesce: bool) -> None:
        self._transport = transport
        self._proto = proto
        self._coalesce = coalesce
        self._pending: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._pending:
            self._flush()
        proto = self._proto
        if not proto.buffer and not proto.eof:
            proto.waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await proto.waiter
                else:
                    async with asyncio.timeout(timeout):
                        await proto.waiter
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading") from None
            finally:
                proto.waiter = None
        if proto.buffer:
            data = bytes(proto.buffer[:max_bytes])
            del proto.buffer[:max_bytes]
            if proto.paused_reading and len(proto.buffer) < _READ_HIGH_WATER // 2:
                proto.paused_reading = False
                self._transport.resume_reading()
            return data
        if proto.error is not None:
            raise httpcore.ReadError(
                str(proto.error) or type(proto.error).__name__
            ) from proto.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._proto.eof and self._proto.error is not None:
            raise httpcore.WriteError(str(self._proto.error)) from self._proto.error
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        if self._coalesce:
            self._pending.append(buffer)
            if sum(map(len, self._pending)) <= _WRITE_COALESCE_MAX:
                return
            self._flush()
        else:
            self._transport.write(buffer)
        drained = self._proto.drained
        if drained is not None and not drained.done():
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(drained)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing") from None

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def aclose(self) -> None:
        self._pending = []
        if self._transport.get_extra_info("ssl_object") is not None:
            # A TLS close waits for the peer's close_notify; a process that ends right after
            # (asyncio.run returning) never sees it, and the socket under it was left open.
            # The pool only closes what it is done with: drop it at once.
            self._transport.abort()
        else:
            self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._pending:
            self._flush()
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._proto,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        ssl_object = transport.get_extra_info("ssl_object")
        h2 = ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        self._proto.transport = transport
        return _Stream(transport, self._proto, coalesce=self._coalesce and not h2)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # while idle: data, the end, or closed
            proto = self._proto
            return bool(proto.buffer) or proto.eof or self._transport.is_closing()
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, *, coalesce: bool = True) -> None:
        self._coalesce = coalesce

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        return await self._open(
            loop.create_connection(_Protocol, host, port, local_addr=local),
            f"{host}:{port}",
            timeout,
            socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await self._open(
            loop.create_unix_connection(_Protocol, path), path, timeout, socket_options
        )

    async def _open(
        self,
        connecting: Coroutine[Any, Any, tuple[asyncio.Transport, _Protocol]],
        where: str,
        timeout: float | None,
        socket_options: Iterable[_SocketOption] | None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect within ``timeout``, set the socket options, wrap it as httpcore's stream."""
        try:
            async with asyncio.timeout(timeout):
                transport, proto = await connecting
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, proto, coalesce=self._coalesce)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Transport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` (same arguments) on the asyncio backend above, its pool's
    bookkeeping in linear time (:mod:`receiver.pool`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = getattr(self, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            # HTTP/2 without HTTP/1.1 (prior knowledge) over plain TCP: never hold writes.
            pool._network_backend = _Backend(coalesce=kwargs.get("http1", True))
        if type(pool) is httpcore.AsyncConnectionPool:
            pool.__class__ = LinearPool  # same object and state, the one method replaced


class Client(httpx.AsyncClient):
    """``httpx.AsyncClient`` (same arguments) whose responses are freed as soon as the caller
    drops them.

    httpx binds every response's stream to the response (``BoundAsyncStream`` holds the
    response, the response holds it as its ``stream``): a reference cycle, so the response,
    its request, headers, URL and httpcore's stream objects behind it (about 50 objects per
    request) wait for the garbage collector instead of being freed by reference counting.
    Under load that was most of what the collector found: a young-generation collection
    every second or so, each a pause of 6-9 ms on the event loop, all of it spent on this
    garbage. Once a response's body is read (``stream=False``: httpx read and closed it),
    its stream has done its work; it is swapped for the bytes it held, which breaks the
    cycle. A streamed response keeps its stream (the caller reads it).
    """

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: httpx._types.AuthTypes | httpx._client.UseClientDefault | None = (
            httpx.USE_CLIENT_DEFAULT
        ),
        follow_redirects: bool | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        response = await super().send(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )
        if not stream:
            for each in (*response.history, response):
                unbind(each)
        return response


def unbind(response: httpx.Response) -> None:
    """Break a read response's cycle with its stream (see :class:`Client`)."""
    if response.is_closed and hasattr(response, "_content"):
        response.stream = httpx.ByteStream(response.content)


def fast_path_active(transport: httpx.AsyncBaseTransport) -> bool:
    """True when the asyncio backend and the linear pool are both in place."""
    pool = getattr(transport, "_pool", None)
    return isinstance(pool, LinearPool) and isinstance(
        getattr(pool, "_network_backend", None), _Backend
    )

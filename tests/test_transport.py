"""The product's HTTP transport: httpx's, with a cheap check of idle pooled connections."""

from __future__ import annotations

import asyncio
import socket

import httpx

from receiver.transport import Transport, _readable, fast_path_active


def test_readable_tells_data_and_end_of_connection_apart_from_quiet() -> None:
    a, b = socket.socketpair()
    try:
        assert not _readable(a)  # quiet: an idle connection that is fine
        b.send(b"x")
        assert _readable(a)  # unexpected data on an idle connection: not reusable
        a.recv(1)
        b.close()
        assert _readable(a)  # the peer closed: reading would return b""
    finally:
        a.close()
    assert _readable(a)  # no descriptor any more
    assert _readable(None)


def test_the_fast_path_is_in_place() -> None:
    """Fails when an httpx/httpcore upgrade moves the private attribute we set."""
    assert fast_path_active(Transport())
    assert fast_path_active(Transport(http2=True))
    assert not fast_path_active(httpx.AsyncHTTPTransport())


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The server answers one request per connection and then closes it (as an idle timeout
    would). Reusing it would fail with 'Server disconnected'; the pool must see that it is
    closed and open a new one."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive was not refused: the client pools the connection

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=Transport()) as client:
            for _ in range(3):
                response = await client.get(f"http://127.0.0.1:{port}/")
                assert response.text == "ok"
                await asyncio.sleep(0.05)  # the FIN arrives while the connection is idle
        assert connections == 3
    finally:
        server.close()
        await server.wait_closed()

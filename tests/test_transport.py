"""The product's HTTP transport: httpx's on an asyncio backend, with a cheap check of idle
pooled connections and a request written in one piece."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Generator, Iterator

import httpcore
import httpx
import pytest

from receiver.transport import Client, Transport, _Backend, fast_path_active
from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.waiting import wait_until_async


async def test_an_idle_connection_is_readable_after_data_or_its_end() -> None:
    """The pool's check of an idle connection: quiet is fine; unexpected data or the peer's
    close makes it unusable (seen by the event loop, no system call)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    try:
        port = server.getsockname()[1]
        for ending in ("data", "close"):
            stream = await _Backend().connect_tcp("127.0.0.1", port, timeout=5)
            peer, _ = server.accept()
            assert not stream.get_extra_info("is_readable")  # quiet: fine to reuse
            if ending == "data":
                peer.send(b"x")
            else:
                peer.close()

            async def readable(s: httpcore.AsyncNetworkStream = stream) -> bool:
                return bool(s.get_extra_info("is_readable"))

            await wait_until_async(readable, bool, timeout_s=5, what=f"readable ({ending})")
            peer.close()
            await stream.aclose()
            assert stream.get_extra_info("is_readable")  # closed: never reused
    finally:
        server.close()


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


async def test_a_request_goes_out_in_one_write_when_its_answer_is_read() -> None:
    """Headers and body written separately by httpcore leave as one send: nothing is sent
    before the response is read, then everything at once (one segment on the wire)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        port = server.getsockname()[1]
        stream = await _Backend().connect_tcp("127.0.0.1", port, timeout=5)
        peer, _ = server.accept()
        peer.setblocking(False)
        await stream.write(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n")
        await stream.write(b"body")
        # A send on loopback is in the peer's queue when it returns: nothing was sent.
        with pytest.raises(BlockingIOError):
            peer.recv(1024)
        reader = asyncio.ensure_future(stream.read(1024, timeout=5))
        await asyncio.sleep(0)  # the reader runs up to its wait, sending on the way
        assert peer.recv(1024) == b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
        peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert await reader == b"HTTP/1.1 204 No Content\r\n\r\n"
        peer.close()
        assert await stream.read(1024, timeout=5) == b""  # the end of the connection
        assert stream.get_extra_info("is_readable")
        await stream.aclose()
    finally:
        server.close()


async def test_a_read_that_gets_no_answer_times_out() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        stream = await _Backend().connect_tcp("127.0.0.1", server.getsockname()[1], timeout=5)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(1024, timeout=0.1)
        await stream.aclose()
    finally:
        server.close()
    with pytest.raises(httpcore.ConnectError):  # nobody listens there any more
        await _Backend().connect_tcp("127.0.0.1", 1, timeout=5)


async def test_a_tls_connection_is_closed_at_once(simulator: SimulatorHandle) -> None:
    """Closing a TLS connection does not wait for the peer's close_notify: a process that ends
    right after (asyncio.run returning) left the socket under it open (a ResourceWarning at
    collection, seen as flaky failures of whichever test ran then)."""
    client = httpx.AsyncClient(transport=Transport(verify=simulator.ssl_context()))
    response = await client.get(f"{simulator.base_url}/_sim/health")
    assert response.status_code == 200
    sock = response.extensions["network_stream"].get_extra_info("socket")
    assert sock.fileno() != -1
    await client.aclose()
    await asyncio.sleep(0)  # one turn of the loop, no round trip to the peer
    assert sock.fileno() == -1


class _RetryOn401(httpx.Auth):
    """An auth flow that sends the request again after a 401 (the first response goes to
    the final response's history)."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code == 401:
            request.headers["authorization"] = "Bearer fresh"
            yield request


@contextlib.contextmanager
def _collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("client_class", [httpx.AsyncClient, Client])
async def test_a_read_response_is_freed_without_the_garbage_collector(
    client_class: type[httpx.AsyncClient],
) -> None:
    """httpx's response and its stream refer to each other; the product's Client breaks
    that cycle once the body is read, so 50 requests (half of them retried after a 401)
    leave nothing for the collector. httpx's own client is the control: the same requests
    leave their responses, requests and streams behind."""

    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        handlers.append(me)  # type: ignore[arg-type]
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            status = b"200 OK" if b"fresh" in head or b"/once" not in head else b"401 No"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client_class(transport=Transport(), auth=_RetryOn401()) as client:
            await client.get(f"http://127.0.0.1:{port}/")  # the connection and pool made
            with _collector_off():
                for i in range(50):
                    response = await client.get(f"http://127.0.0.1:{port}/{'once' * (i % 2)}")
                    assert (response.text, response.status_code) == ("ok", 200)
                    assert len(response.history) == i % 2
                del response
                left = gc.collect()
        await asyncio.gather(*handlers)  # the server's side closed too
        if client_class is Client:
            assert left < 50  # (a few objects of the loop's own, not one per request)
        else:
            assert left > 50 * 20
    finally:
        server.close()
        await server.wait_closed()

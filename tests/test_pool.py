"""The connection pool's bookkeeping (receiver/pool.py): httpcore's decisions, in linear time,
against a real HTTP/1.1 server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx
import pytest

from receiver.pool import LinearPool
from receiver.transport import Transport
from tests.fixtures.waiting import wait_until_async


class Server:
    """HTTP/1.1 with keep-alive; each answer after ``delay_s`` (``/held``: once ``release``
    is set; after ``/drop`` it closes the connection, as a server ending an idle keep-alive
    connection does); counts connections and the most requests in flight at once."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.connections = 0
        self.dropped = 0  # connections closed by the server after a /drop answer
        self.in_flight = 0
        self.most_in_flight = 0
        self.port = 0
        self.release = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                if head.startswith(b"GET /held"):
                    await self.release.wait()
                else:
                    await asyncio.sleep(self.delay_s)
                self.in_flight -= 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                if head.startswith(b"GET /drop"):  # close while the client keeps it pooled
                    self.dropped += 1
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server(delay_s=0.05)
    listener = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    s.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield s


def _pool(client: httpx.AsyncClient, *, sweep_every_s: float | None = None) -> LinearPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, LinearPool)
    if sweep_every_s is not None:
        pool.sweep_every_s = sweep_every_s
    return pool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clocked(client: httpx.AsyncClient) -> tuple[LinearPool, Clock]:
    """The client's pool on a clock the test moves (sweeps come when the test says)."""
    pool, clock = _pool(client), Clock()
    pool.clock = clock
    return pool, clock


async def test_requests_beyond_max_connections_wait_and_all_succeed(server: Server) -> None:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=4)
    async with httpx.AsyncClient(transport=Transport(limits=limits)) as client:
        _pool(client, sweep_every_s=0.0)  # every pass the full one: httpcore's decisions
        url = f"http://127.0.0.1:{server.port}/"
        answers = await asyncio.gather(*(client.get(url) for _ in range(40)))
        assert [a.status_code for a in answers] == [200] * 40
        assert server.most_in_flight == 8  # never more than the pool allows, and all used
        # idle connections beyond the keep-alive limit were closed, oldest first
        pool = _pool(client)
        assert len(pool.connections) == 4 and all(c.is_idle() for c in pool.connections)
        # and they are reused: more requests open no connection while 4 suffice
        opened = server.connections
        for _ in range(3):
            await asyncio.gather(*(client.get(url) for _ in range(4)))
        assert server.connections == opened


async def test_the_keepalive_limit_counts_idle_connections_only(server: Server) -> None:
    """httpcore compares all connections with max_keepalive_connections: with 6 requests in
    flight and a limit of 2, every connection that comes free is closed, and the next
    request opens a new one. The limit is about idle connections."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=2)
    async with httpx.AsyncClient(transport=Transport(limits=limits)) as client:
        _pool(client, sweep_every_s=0.0)
        url = f"http://127.0.0.1:{server.port}"
        busy = [asyncio.create_task(client.get(f"{url}/held")) for _ in range(6)]

        async def in_flight() -> int:
            return server.in_flight

        await wait_until_async(in_flight, lambda n: n == 6, timeout_s=10, what="6 held")
        for _ in range(10):
            assert (await client.get(f"{url}/fast")).status_code == 200
        assert server.connections == 7  # the 10 fast ones shared one kept connection
        server.release.set()
        await asyncio.gather(*busy)
        assert len(_pool(client).connections) == 2  # then the idle ones down to the limit


async def test_one_pass_looks_at_each_connection_a_bounded_number_of_times(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost this module removes: with 40 pooled connections, httpcore's pass asked
    is_idle() of every connection once for each idle one (about 1,600 calls a pass)."""
    calls = 0
    is_idle = httpcore.AsyncHTTPConnection.is_idle

    def counted(self: httpcore.AsyncHTTPConnection) -> bool:
        nonlocal calls
        calls += 1
        return is_idle(self)

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(transport=Transport(limits=limits)) as client:
        pool = _pool(client, sweep_every_s=0.0)  # the full pass, each time
        url = f"http://127.0.0.1:{server.port}/"
        await asyncio.gather(*(client.get(url) for _ in range(40)))
        assert len(pool.connections) == 40
        monkeypatch.setattr(httpcore.AsyncHTTPConnection, "is_idle", counted)
        await client.get(url)  # two passes: the request enters, then leaves
    assert 0 < calls <= 4 * 40


async def test_between_sweeps_a_request_looks_at_the_connection_it_takes_only(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between sweeps, a request entering asks the first available connection whether it
    has expired, and nothing else of the 40; its leaving asks nothing."""
    asked: list[str] = []
    for name in ("is_idle", "is_closed", "has_expired"):
        real = getattr(httpcore.AsyncHTTPConnection, name)

        def counted(self: httpcore.AsyncHTTPConnection, _real: Any = real, _n: str = name) -> Any:
            asked.append(_n)
            return _real(self)

        monkeypatch.setattr(httpcore.AsyncHTTPConnection, name, counted)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(transport=Transport(limits=limits)) as client:
        pool, clock = _clocked(client)
        url = f"http://127.0.0.1:{server.port}/"
        await asyncio.gather(*(client.get(url) for _ in range(40)))
        assert len(pool.connections) == 40
        asked.clear()
        for _ in range(5):
            assert (await client.get(url)).status_code == 200
        assert asked == ["has_expired"] * 5
        assert server.connections == 40  # and reused what was there
        clock.now += pool.sweep_every_s  # a sweep is due: the next pass walks them all
        asked.clear()
        await client.get(url)
        assert asked.count("is_closed") >= 40


async def test_between_sweeps_idle_connections_beyond_the_limit_close_at_the_next_sweep(
    server: Server,
) -> None:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=4)
    async with httpx.AsyncClient(transport=Transport(limits=limits)) as client:
        pool, clock = _clocked(client)
        url = f"http://127.0.0.1:{server.port}/"
        await asyncio.gather(*(client.get(url) for _ in range(40)))
        assert len(pool.connections) == 8  # no sweep since the burst began
        clock.now += pool.sweep_every_s
        assert (await client.get(url)).status_code == 200
        assert len(pool.connections) == 4 and all(c.is_idle() for c in pool.connections)


async def test_between_sweeps_a_connection_the_server_closed_is_not_used(
    server: Server,
) -> None:
    """The server closes a pooled connection while it is idle: the next request (no sweep
    due) finds it expired, closes it and opens another, instead of failing on it."""
    async with httpx.AsyncClient(transport=Transport()) as client:
        pool, _ = _clocked(client)  # the clock stands still: no sweep comes
        url = f"http://127.0.0.1:{server.port}"
        assert (await client.get(f"{url}/")).status_code == 200  # a full pass (the first)
        assert (await client.get(f"{url}/drop")).status_code == 200
        assert len(pool.connections) == 1

        async def readable() -> bool:
            return bool(pool.connections[0].has_expired())

        await wait_until_async(readable, bool, timeout_s=10, what="the server's close seen")
        assert (await client.get(f"{url}/")).status_code == 200
        assert server.connections == 2 and server.dropped == 1
        assert len(pool.connections) == 1 and not pool.connections[0].is_closed()

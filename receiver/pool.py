"""httpcore's connection pool with its bookkeeping pass in linear time.

httpcore (1.0.9, the newest release) runs ``_assign_requests_to_connections`` when a request
enters the pool and when one leaves it. That pass walks every pooled connection and, for each
idle one, builds a list over all connections again; then, per queued request, two more lists
over all of them: O(connections^2) per request (encode/httpcore#1035, open since 2025-09).
HTTP/1.1 needs a connection per request in flight, so with Graph answering in 150 ms and a
sink in 100 ms a worker at 150 alerts/s holds about 50 connections, and the pass was the
largest single cost of the worker: about a fifth of its CPU (``is_idle`` alone 15 % of the
samples in a profile).

:class:`LinearPool` makes the same decisions in one walk:

- closed connections are dropped, expired ones closed;
- idle connections beyond ``max_keepalive_connections`` are closed, oldest first. (httpcore
  compares the number of *all* connections with that limit, so it closes idle connections
  whenever the pool holds more than the limit, busy ones included, and opens new ones a
  moment later: the limit is meant for idle connections, and is read so here);
- each queued request gets the first available connection for its origin, else a new one
  while the pool is below ``max_connections``, else the place of the oldest idle connection.
  As in httpcore, an HTTP/1.1 connection handed to one request stays available until that
  request starts on it, so two requests may be handed the same one within a pass; the
  second finds it taken and asks again (httpcore's own retry), which is rare and correct.

Between sweeps, a pass does only what its requests need (:attr:`LinearPool.sweep_every_s`):

- a pass with no request waiting (the one httpcore runs after each response) does nothing;
- a waiting request gets the first connection available for its origin, and only that one
  is asked whether it has expired (keep-alive ended, or the server closed it while idle: then
  it is closed and the next is tried), as httpcore asks every connection each pass;
- a request no open connection can take (a new one is needed, or the pool is full) runs the
  full pass above, which is also run once ``sweep_every_s`` has gone by: so closed and
  expired connections leave the pool, and idle ones beyond the keep-alive limit are closed,
  within that time instead of at once.

With Graph answering in 150 ms a worker holds 50-60 connections, and the full pass, twice
per request, was still about a seventh of the worker's CPU (is_closed, has_expired and
is_idle of each, through httpcore's two connection layers).

It is put in place by :class:`receiver.transport.Transport` (``fast_path_active`` checks it
with the network backend): the method is private to httpcore, so a test fails loudly when an
upgrade moves it.
"""

from __future__ import annotations

import time

import httpcore
from httpcore._async.connection_pool import AsyncPoolRequest
from httpcore._async.interfaces import AsyncConnectionInterface


class LinearPool(httpcore.AsyncConnectionPool):
    """``httpcore.AsyncConnectionPool`` whose bookkeeping pass is O(connections + requests),
    and between sweeps O(what the waiting requests need)."""

    # Class attributes: the pool is made by httpx and then given this class (no __init__).
    sweep_every_s = 1.0  # the longest between two full passes while requests come and go
    clock = staticmethod(time.monotonic)
    _next_sweep = 0.0

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
        now = self.clock()
        closing: list[AsyncConnectionInterface] = []
        if now < self._next_sweep:
            queued = [r for r in self._requests if r.is_queued()]
            if not queued or self._assign_open(queued, closing):
                return closing
        self._next_sweep = now + self.sweep_every_s
        return closing + self._full_pass()

    def _assign_open(
        self, queued: list[AsyncPoolRequest], closing: list[AsyncConnectionInterface]
    ) -> bool:
        """Give each waiting request the first open connection available for its origin,
        checking that one only; False when one of them found none (the full pass decides)."""
        taken: set[int] = set()  # an HTTP/1.1 connection stays "available" until it starts
        found_all = True
        for pool_request in queued:
            chosen = self._first_open(pool_request.request.url.origin, taken, closing)
            if chosen is None:
                found_all = False
                break
            taken.add(id(chosen))
            pool_request.assign_to_connection(chosen)
        if closing:
            gone = {id(c) for c in closing}
            self._connections = [c for c in self._connections if id(c) not in gone]
        return found_all

    def _first_open(
        self, origin: httpcore.Origin, taken: set[int], closing: list[AsyncConnectionInterface]
    ) -> AsyncConnectionInterface | None:
        for connection in self._connections:
            if (
                id(connection) in taken
                or not connection.is_available()
                or not connection.can_handle_request(origin)
            ):
                continue
            if connection.has_expired():  # keep-alive over, or the server closed it
                closing.append(connection)
                taken.add(id(connection))
                continue
            return connection
        return None

    def _full_pass(self) -> list[AsyncConnectionInterface]:
        closing: list[AsyncConnectionInterface] = []
        live: list[AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.has_expired():
                closing.append(connection)
            else:
                live.append(connection)
        idle = [c for c in live if c.is_idle()]
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:
            evicted = {id(c) for c in idle[:surplus]}
            closing += idle[:surplus]
            idle = idle[surplus:]
            live = [c for c in live if id(c) not in evicted]
        self._connections = live
        queued = [r for r in self._requests if r.is_queued()]
        if queued:
            self._assign(queued, idle, closing)
        return closing

    def _assign(
        self,
        queued: list[AsyncPoolRequest],
        idle: list[AsyncConnectionInterface],
        closing: list[AsyncConnectionInterface],
    ) -> None:
        available = [c for c in self._connections if c.is_available()]
        for pool_request in queued:
            origin = pool_request.request.url.origin
            connection = next((c for c in available if c.can_handle_request(origin)), None)
            if connection is None:
                if len(self._connections) >= self._max_connections:
                    if not idle:
                        continue  # the request waits for a connection to come free
                    oldest = idle.pop(0)
                    self._connections.remove(oldest)
                    closing.append(oldest)
                    if oldest in available:
                        available.remove(oldest)
                connection = self.create_connection(origin)
                self._connections.append(connection)
                if connection.is_available():  # an HTTP/2 connection may take more at once
                    available.append(connection)
            pool_request.assign_to_connection(connection)

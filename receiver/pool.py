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

It is put in place by :class:`receiver.transport.Transport` (``fast_path_active`` checks it
with the network backend): the method is private to httpcore, so a test fails loudly when an
upgrade moves it.
"""

from __future__ import annotations

import httpcore
from httpcore._async.connection_pool import AsyncPoolRequest
from httpcore._async.interfaces import AsyncConnectionInterface


class LinearPool(httpcore.AsyncConnectionPool):
    """``httpcore.AsyncConnectionPool`` whose bookkeeping pass is O(connections + requests)."""

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
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

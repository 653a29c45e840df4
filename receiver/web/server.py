"""The HTTP server settings the web role starts with, and the request-head bounds uvicorn lacks.

uvicorn with httptools (the fast parser `receiver web` runs) bounds neither the size of a
request head, nor the number of headers, nor the time a client may take to send them: an 8 MiB
header and 20,000 headers were accepted, trickled headers held a connection for as long as the
client liked, and three unfinished 40 MiB headers added 123 MB to the process (issue 15, 7).
uvicorn's ``h11_max_incomplete_event_size`` covers the h11 parser only, and its keep-alive
timer is cancelled by the first byte of the next request. :class:`BoundedHttpToolsProtocol`
adds the three bounds to uvicorn's own protocol (a subclass, so everything else is uvicorn's):

- the head (request line and headers) may be at most ``MAX_HEAD_BYTES``: counted per chunk
  as it arrives, so the parser's buffers never hold more than that plus one read;
- at most ``MAX_HEADERS`` header fields;
- the head must arrive within ``HEAD_TIMEOUT_S`` of the connection opening or of the first
  byte of the request (an idle keep-alive connection is uvicorn's ``timeout_keep_alive``).

Over a bound the client gets ``431`` (size, count) or ``408`` (time) and the connection is
closed. The body has its own bounds in the endpoints (``web.max_body_bytes``,
``web.body_timeout_s``). An ingress in front should still apply its own (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from receiver.config.settings import Settings

__all__ = [
    "HEAD_TIMEOUT_S",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "BoundedHttpToolsProtocol",
    "server_options",
]

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; Graph sends well under 2 KB
MAX_HEADERS = 100  # browsers send about 20, Graph about 10
HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 75  # longer than common load balancers' idle timeout (60 s)


class _HeadRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the request head's size, field count and
    arrival time (see the module docstring)."""

    max_head_bytes = MAX_HEAD_BYTES
    max_headers = MAX_HEADERS
    head_timeout_s = HEAD_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a new connection waits for its first request head
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse(exc.__context__.status, exc.__context__.message)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "Request header fields too large.")

    # parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            raise _HeadRefused(431, "Too many request header fields.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    # the bounds -------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request header not received in time.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close; mid-response (a pipelined head) only close."""
        self._refused = True
        self._cancel_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode("ascii")
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()


def server_options(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> dict[str, Any]:
    """uvicorn settings for the web role (``receiver web`` and ``receiver serve``): the
    bounded protocol above, no access log (the app logs what matters), keep-alive longer than
    a load balancer's idle timeout."""
    return {
        "host": host or settings.web.host,
        "port": port or settings.web.port,
        "http": BoundedHttpToolsProtocol,
        "access_log": False,
        "log_config": None,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "backlog": 4096,
        # Used only if someone switches to the h11 parser: the same head bound.
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }

"""The web endpoint over a real socket to a real uvicorn: arbitrary headers, huge bodies,
slow bodies (slow-loris), and item fields no JSON parser should pass on unchecked (lone
surrogates, UTF-16 and UTF-32 bodies, ids that are not GUIDs). The in-process fuzz of bodies
and JSON is tests/web/test_fuzz.py.

Properties: only the documented statuses, a declared or streamed body over the limit is
refused with 413 without being read to the end, slow clients hold no worker (a valid
notification is answered at once while a hundred of them trickle), and a valid
notification sent after all of it is still stored.
"""

from __future__ import annotations

import asyncio
import json
import socket
import string
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.config.settings import Settings
from receiver.store.registry import SubscriptionRecord
from receiver.web.app import create_app
from receiver.web.server import server_options
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import body, free_port, notification, register
from tests.web.test_ingest import stream

PATH = "/webhooks/graph"
ALLOWED = {200, 202, 400, 403, 405, 408, 413, 415, 431}
LIMIT = 64 * 1024


class Served:
    """The web app on uvicorn (httptools, as `receiver web` runs it) in a thread."""

    def __init__(self, settings_: Settings) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings_),
                **{
                    **server_options(settings_, host="127.0.0.1", port=self.port),
                    "timeout_keep_alive": 5,
                },
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def request(self, head: bytes, content: bytes = b"") -> int | None:
        """Send one request; its status, or None when the server closed without one."""
        with self.connect() as s:
            s.sendall(head + content)
            return _status(s)


def _status(s: socket.socket) -> int | None:
    """The final status of the answer (a ``100 Continue`` is skipped), or None."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            data += chunk
        status = int(data.split(b" ", 2)[1])
        if status >= 200:
            return status
        data = data.split(b"\r\n\r\n", 1)[1]


def _head(headers: list[tuple[str, str]], length: int | None) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", "Host: receiver", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture
def web(
    make_settings: MakeSettings, redis_url: str
) -> Iterator[tuple[Served, SubscriptionRecord, Settings]]:
    settings_ = make_settings(redis_url=redis_url, web={"max_body_bytes": LIMIT})
    record = asyncio.run(register(redis_url, settings_))
    served = Served(settings_)
    yield served, record, settings_
    served.stop()


def _still_stores(
    served: Served, record: SubscriptionRecord, settings_: Settings, redis_url: str, alert_id: str
) -> None:
    content = body(notification(record, alert_id))
    assert (
        served.request(_head([("Content-Type", "application/json")], len(content)), content) == 202
    )
    assert alert_id in [e["resource_id"] for e in stream(redis_url, settings_)]


TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
header_names = st.text(TOKEN, min_size=1, max_size=30) | st.sampled_from(
    [
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Expect",
        "Authorization",
        "X-Forwarded-For",
        "Content-Type",
        "Client-Request-Id",
    ]
)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200
) | st.sampled_from(
    [
        "application/json",
        "gzip",
        "chunked",
        "100-continue",
        "identity",
        "application/json; charset=utf-16",
        "x" * 8000,
    ]
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=st.lists(st.tuples(header_names, header_values), max_size=12),
    content=st.sampled_from([b"", b"{}", b'{"value": []}', b"\x00\xff" * 10, b"[" * 500]),
)
def test_arbitrary_headers(
    web: tuple[Served, SubscriptionRecord, Settings], headers: list[tuple[str, str]], content: bytes
) -> None:
    served, _, _ = web
    headers = [
        (k, v) for k, v in headers if k.lower() not in ("content-length", "host", "connection")
    ]
    status = served.request(_head(headers, len(content)), content)
    if status is None:  # the HTTP parser refused the message (e.g. a bad Transfer-Encoding)
        return
    assert status in ALLOWED, (status, headers)


def test_headers_then_a_valid_notification_is_stored(
    web: tuple[Served, SubscriptionRecord, Settings], redis_url: str
) -> None:
    served, record, settings_ = web
    weird = [
        ("Content-Type", "application/json"),
        ("X-" + "a" * 60, "b" * 4000),
        ("Content-Encoding", "gzip"),
        ("Expect", "100-continue"),
    ]
    assert served.request(_head(weird, 2), b"{}") in ALLOWED
    _still_stores(served, record, settings_, redis_url, "after-headers")


def test_huge_declared_body_refused_before_reading(
    web: tuple[Served, SubscriptionRecord, Settings], redis_url: str
) -> None:
    served, record, settings_ = web
    started = time.monotonic()
    with served.connect() as s:  # 100 MB announced, not one byte of it sent
        s.sendall(_head([("Content-Type", "application/json")], 100 * 1024 * 1024))
        assert _status(s) == 413
    assert time.monotonic() - started < 2
    _still_stores(served, record, settings_, redis_url, "after-huge")


def test_huge_streamed_body_refused_while_reading(
    web: tuple[Served, SubscriptionRecord, Settings], redis_url: str
) -> None:
    served, record, settings_ = web
    sent = 0
    with served.connect() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        s.sendall(
            _head([("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")], None)
        )
        chunk = b"[" * 16384
        status = None
        try:
            while sent < 50 * 1024 * 1024:  # up to 50 MB, but the answer comes long before
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                s.setblocking(False)
                try:
                    if s.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: refused while reading
        s.settimeout(5)
        status = _status(s)
    assert status in (413, None)
    # What was sent includes what the kernel buffered on both sides of the loopback (a few
    # MB on a busy machine): the point is that the answer came long before the 50 MB.
    assert sent < 10 * 1024 * 1024, f"{sent} bytes sent before the server refused"
    _still_stores(served, record, settings_, redis_url, "after-stream")


def test_slow_loris_blocks_no_one(
    web: tuple[Served, SubscriptionRecord, Settings], redis_url: str
) -> None:
    served, record, settings_ = web
    slow: list[socket.socket] = []
    try:
        for _ in range(100):  # each announces 1000 bytes and sends ten
            s = served.connect()
            s.sendall(_head([("Content-Type", "application/json")], 1000) + b'{"value": ')
            slow.append(s)
        for i in range(5):
            started = time.monotonic()
            _still_stores(served, record, settings_, redis_url, f"beside-slow-{i}")
            assert time.monotonic() - started < 1.0
            for s in slow[:20]:  # keep trickling
                s.sendall(b" ")
    finally:
        for s in slow:
            s.close()
    _still_stores(served, record, settings_, redis_url, "after-slow")


def test_a_body_that_never_finishes_is_cut_off(make_settings: MakeSettings, redis_url: str) -> None:
    """Past web.body_timeout_s a trickling body gets 408 and its connection is closed, so a
    slow client cannot hold a coroutine and a socket for as long as it likes."""
    settings_ = make_settings(redis_url=redis_url, web={"body_timeout_s": 0.5})
    record = asyncio.run(register(redis_url, settings_))
    served = Served(settings_)
    try:
        with served.connect() as s:
            s.sendall(_head([("Content-Type", "application/json")], 1000) + b'{"value": ')
            started = time.monotonic()
            for _ in range(3):  # a byte now and then, never the whole body
                time.sleep(0.1)
                s.sendall(b" ")
            assert _status(s) == 408
            assert time.monotonic() - started < 3
        _still_stores(served, record, settings_, redis_url, "after-timeout")
    finally:
        served.stop()


# Text as a JSON body can carry it: lone surrogates arrive as "\\udXXX" escapes.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d", "😀", "\x00", "x" * 3000]),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
)
nasty_item = st.fixed_dictionaries(
    {
        "subscriptionId": nasty_text,
        "tenantId": nasty_text,
        "clientState": nasty_text,
    },
    optional={
        "changeType": st.sampled_from(["updated", "created", "\ud800"]),
        "resource": nasty_text,
        "lifecycleEvent": st.sampled_from(["missed", "\udfff"]),
        "resourceData": st.fixed_dictionaries({"id": nasty_text, "@odata.type": nasty_text}),
        "encryptedContent": st.fixed_dictionaries(
            {
                "data": nasty_text,
                "dataKey": nasty_text,
                "dataSignature": nasty_text,
                "encryptionCertificateId": nasty_text,
            }
        ),
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(nasty_item, min_size=1, max_size=5),
    tokens=st.lists(nasty_text, max_size=3),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-32", "utf-16-le", "utf-8-sig"]),
)
def test_surrogates_utf16_and_non_guid_ids(
    web: tuple[Served, SubscriptionRecord, Settings],
    items: list[dict[str, object]],
    tokens: list[str],
    encoding: str,
) -> None:
    """Issue 15, 5 and 6: none of it may give a 5xx (a lone surrogate once made a 500 with a
    2.3 KB traceback), and nothing made up is stored."""
    served, _, _ = web
    text = json.dumps({"value": items, "validationTokens": tokens})  # ASCII, \\u escapes
    content = text.encode(encoding, errors="surrogatepass")
    status = served.request(_head([("Content-Type", "application/json")], len(content)), content)
    assert status in ALLOWED - {200, 202}, (status, encoding, items)


def test_forged_and_surrogate_items_then_a_valid_one_is_stored(
    web: tuple[Served, SubscriptionRecord, Settings], redis_url: str
) -> None:
    served, record, settings_ = web
    forged = {"value": [{"subscriptionId": "\ud800", "tenantId": "x", "clientState": "y"}]}
    content = json.dumps(forged).encode()
    assert (
        served.request(_head([("Content-Type", "application/json")], len(content)), content) == 400
    )
    _still_stores(served, record, settings_, redis_url, "after-surrogates")

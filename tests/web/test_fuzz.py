"""Property-based: arbitrary bytes, JSON and headers at both endpoints.

No 5xx (Redis is up), no exception escapes, only the documented statuses, memory bounded,
and a valid notification sent after all that is still stored.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.config.settings import Settings
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import JSON, body, notification, register
from tests.web.test_ingest import stream

PATHS = ["/webhooks/graph", "/webhooks/graph/lifecycle"]
ALLOWED = {200, 202, 400, 403, 405, 413, 415}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
item_keys = st.sampled_from(
    [
        "subscriptionId",
        "clientState",
        "tenantId",
        "changeType",
        "resource",
        "resourceData",
        "lifecycleEvent",
        "encryptedContent",
        "subscriptionExpirationDateTime",
    ]
)
items = st.dictionaries(item_keys, json_values, max_size=9)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"value": st.lists(items, max_size=5)}),
    st.fixed_dictionaries(
        {
            "value": st.lists(items, min_size=1, max_size=5),
            "validationTokens": st.lists(st.text(max_size=50), max_size=3),
        }
    ),
)


class Driver:
    """One app, one event loop, many requests (hypothesis calls the test synchronously)."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.app = create_app(settings)
        self._lifespan = self.app.fallback.router.lifespan_context(self.app.fallback)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://receiver"
        )

    def post(
        self,
        path: str,
        content: bytes,
        headers: dict[str, str],
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        return self.loop.run_until_complete(
            self.client.post(path, content=content, headers=headers, params=params)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def driver(make_settings: MakeSettings, redis_url: str) -> Iterator[Driver]:
    d = Driver(make_settings(redis_url=redis_url, web={"max_body_bytes": 64 * 1024}))
    yield d
    d.close()


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    raw=st.binary(max_size=2048),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "",
            "APPLICATION/JSON",
            "application/xml",
        ]
    ),
)
def test_arbitrary_bytes(driver: Driver, path: str, raw: bytes, content_type: str) -> None:
    r = driver.post(path, raw, {"content-type": content_type} if content_type else {})
    assert r.status_code in ALLOWED


@FUZZ
@given(path=st.sampled_from(PATHS), payload=payloads)
def test_arbitrary_json(driver: Driver, path: str, payload: Any) -> None:
    r = driver.post(path, json.dumps(payload).encode(), JSON)
    assert r.status_code in ALLOWED - {202, 200}  # nothing valid can be made up


@FUZZ
@given(path=st.sampled_from(PATHS), token=st.text(max_size=300))
def test_arbitrary_handshake_tokens(driver: Driver, path: str, token: str) -> None:
    r = driver.post(path, b"", {"content-type": "text/plain"}, {"validationToken": token})
    assert r.status_code in {200, 400}
    if r.status_code == 200:
        assert r.text == token


def test_memory_bounded_and_valid_items_still_stored(
    driver: Driver, redis_url: str, make_settings: MakeSettings
) -> None:
    settings_ = make_settings(redis_url=redis_url)
    rec = driver.loop.run_until_complete(register(redis_url, settings_))
    junk = [
        b"{",
        b'{"value": [{}]}',
        b"\x00" * 4000,
        json.dumps({"value": [notification(rec, "x", clientState="forged")]}).encode(),
        b'{"value": ' * 5000,
    ]
    tracemalloc.start()
    for round_ in range(2):
        for i in range(500):
            driver.post(PATHS[i % 2], junk[i % len(junk)], JSON)
        gc.collect()
        if round_ == 0:
            baseline = tracemalloc.get_traced_memory()[0]
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert grown < 512 * 1024, f"memory grew by {grown} bytes over 500 bad requests"
    r = driver.post(PATHS[0], body(notification(rec, "still-works")), JSON)
    assert r.status_code == 202
    assert [e["resource_id"] for e in stream(redis_url, settings_)] == ["still-works"]

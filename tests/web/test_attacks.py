"""Issue 15, items 5-7, against `receiver web` as a user starts it (its own process, real
sockets, a real Redis): no input gives a 5xx, forged ids cost a bounded number of Redis reads,
and the request head is bounded in size, field count and time. The figures before and after
the fixes come from ``python -m tests.benchmarks.attacks`` (same helpers, no bounds)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.asyncio import Redis

from receiver.store.keys import Keys
from receiver.web.registry_cache import RegistryCache
from receiver.web.server import HEAD_TIMEOUT_S, BoundedHttpToolsProtocol, server_options
from tests.benchmarks import attacks
from tests.fixtures.settings import TENANT_ID, MakeSettings


@pytest.fixture
def web(redis_url: str) -> Iterator[tuple[attacks.Web, str]]:
    sid = attacks.register(redis_url)
    with attacks.web(redis_url) as server:
        yield server, sid


def _rejected(server: attacks.Web, reason: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("receiver_web_items_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_lone_surrogates_are_a_400_and_counted(web: tuple[attacks.Web, str]) -> None:
    server, sid = web
    bodies = [
        b'{"value":[{"subscriptionId":"\\ud800","tenantId":"x","clientState":"y"}]}',
        (
            f'{{"value":[{{"subscriptionId":"{sid}","tenantId":"{TENANT_ID}","clientState":"\\udfff",'
            '"changeType":"updated","resource":"a/b"}]}'
        ).encode(),
        attacks.valid_body(sid)[:-1] + b',"validationTokens":["\\ud800"]}',
    ]
    for content in bodies:
        assert attacks.post(server.port, content) == 400, content
    assert _rejected(server, "bad_item") == 2
    assert _rejected(server, "bad_envelope") == 1
    assert attacks.post(server.port, attacks.valid_body(sid)) == 202


def test_forged_ids_cost_a_bounded_number_of_redis_reads(
    web: tuple[attacks.Web, str], redis_url: str
) -> None:
    """One 1 MiB body of random subscription ids made one Redis read per id (6,311 here)."""
    server, sid = web
    with redis.Redis.from_url(redis_url) as client:
        reads, status = attacks.reads_per_forged_request(server, client)
    assert status == 403
    # 16 lookups, one registry version check, and the background check (one a second)
    assert reads <= 16 + 1 + 2, reads
    p50, p99, sent = attacks.latency_under_flood(server, sid, attacks.forged_body(), seconds=2)
    assert sent > 0 and p99 < 1000, (p50, p99)  # every valid post still answered 202


async def test_negative_cache_is_bounded_in_bytes_and_lookups(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        cache = RegistryCache(client, Keys("{test}"))
        cache.max_negative_bytes = 64 * 1024
        await cache.refresh()
        with redis.Redis.from_url(redis_url) as sync:
            sync.config_resetstat()
            for _ in range(50):
                await cache.lookup({str(uuid.uuid4()) for _ in range(500)})
            reads = int(sync.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
        assert reads == 50 * cache.max_lookups
        assert 0 < cache.negative_bytes <= 64 * 1024
    finally:
        await client.aclose()


def test_an_8_mib_header_and_20000_headers_are_refused(web: tuple[attacks.Web, str]) -> None:
    server, sid = web
    assert attacks.big_header(server.port) == 431
    assert attacks.many_headers(server.port) == 431
    assert attacks.many_headers(server.port, 98) == 200  # 100 fields with Host, Connection
    assert attacks.post(server.port, attacks.valid_body(sid)) == 202


def test_unfinished_huge_heads_do_not_grow_the_process(web: tuple[attacks.Web, str]) -> None:
    server, sid = web
    grown_kib = attacks.unfinished_heads_rss_kib(server)
    assert grown_kib < 16 * 1024, grown_kib  # 123 MB before the bound
    assert attacks.post(server.port, attacks.valid_body(sid)) == 202


def test_a_trickled_head_is_cut_off(web: tuple[attacks.Web, str]) -> None:
    server, sid = web
    held_s, status = attacks.trickled_head_held_s(server.port, cap_s=HEAD_TIMEOUT_S + 10)
    assert status == 408 and HEAD_TIMEOUT_S - 1 <= held_s <= HEAD_TIMEOUT_S + 2, held_s
    assert attacks.post(server.port, attacks.valid_body(sid)) == 202


def test_the_web_role_starts_with_the_bounded_protocol(make_settings: MakeSettings) -> None:
    options = server_options(make_settings(), port=8123)
    assert options["http"] is BoundedHttpToolsProtocol and options["port"] == 8123
    assert options["h11_max_incomplete_event_size"] == BoundedHttpToolsProtocol.max_head_bytes

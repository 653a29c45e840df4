"""Issue 15, item 1: a webhook server that echoes its request line (which holds the URL token)
after padding, so a cut at 200 characters falls inside the token. The real worker delivers a
polled simulator alert to it over loopback; no fragment of the token (4+ characters) may reach
the DLQ record (`receiver dlq show`), the delivery timeline (`receiver alerts show`), the status
page, the worker log or anything in Redis."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.admin.server import AdminServer
from receiver.cli import main
from receiver.config.loader import settings_from_mapping
from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.logs import JsonFormatter
from receiver.pipeline.worker import build_worker
from receiver.store.keys import Keys
from tests.fixtures.settings import WriteConfig, base_settings_data, deep_merge
from tests.fixtures.web import served
from tests.graph.helpers import tenant_entry

# 23 characters; every 4-character window holds an upper-case letter, so no GUID, hex id or
# timestamp in Redis can contain one by chance.
TOKEN = "QzWxTkRvMpLnHjGfSsYuKqP"
PADDING = "=" * 166  # + "POST /hooks/" puts the 200-character cut after 22 of 23 characters


def fragments(secret: str, shortest: int = 4) -> list[str]:
    """Every substring of ``secret`` at least ``shortest`` long, longest first."""
    return sorted(
        {secret[i:j] for i in range(len(secret)) for j in range(i + shortest, len(secret) + 1)},
        key=len,
        reverse=True,
    )


def longest_leak(haystack: str) -> str:
    return next((f for f in fragments(TOKEN) if f in haystack), "")


async def redis_text(redis: aioredis.Redis) -> str:
    """Every key and value in Redis, as text."""
    parts: list[str] = []
    async for key in redis.scan_iter(count=1000):
        kind_raw: Any = await redis.type(key)
        kind = kind_raw.decode()
        value: Any
        if kind == "string":
            value = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


async def test_echoed_token_cut_at_the_edge_leaks_nothing(
    make_simulator: Callable[..., Any],
    redis_url: str,
    tmp_path: Path,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []

    async def echo(request: Request) -> Response:
        line = f"{request.method} {request.url.path} HTTP/1.1"
        seen.append(line)
        return Response(PADDING + line, status_code=400, media_type="text/plain")

    sim = make_simulator()
    tid = sim.tenant.tenant_id
    (tmp_path / "routes.yaml").write_text("route:\n  receiver: hook\n")
    tenant = tenant_entry(sim.tenant, "contoso")
    tenant["poll"] = {"alerts_v2": True, "incidents": False}
    log_buffer = io.StringIO()
    handler = logging.StreamHandler(log_buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with served(
            Starlette(routes=[Route("/hooks/{token}", echo, methods=["POST"])])
        ) as hook_url:
            data = deep_merge(
                base_settings_data(),
                {
                    "redis": {"url": redis_url},
                    "graph": {
                        "authority_host": sim.base_url,
                        "graph_url": sim.graph_url,
                        "ca_bundle": str(sim.ca_path),
                    },
                    "tenants": [tenant],
                    "routes_file": str(tmp_path / "routes.yaml"),
                    "sinks": [
                        {"type": "webhook", "name": "hook", "url": f"{hook_url}/hooks/{TOKEN}"}
                    ],
                },
            )
            settings = settings_from_mapping(data, source="<test>")
            config = write_config(data)
            made = await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2")
            [alert_id] = made["ids"]
            graph = client_for(settings, redis)
            try:
                poller = Poller(redis, Keys(settings.redis.key_prefix), settings, graph)
                assert await poller.poll_all() == 1
                worker = build_worker(settings, redis, graph=graph)
                await worker.run(burst=True)
                await worker.sinks.aclose()
            finally:
                await graph.aclose()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    # The server really echoed the token, and the delivery was dead-lettered.
    assert seen == [f"POST /hooks/{TOKEN} HTTP/1.1"]
    keys = Keys(settings.redis.key_prefix)
    dead: Any = await redis.xrange(keys.dlq("hook"))
    [(dlq_id, fields)] = dead
    assert b"answered HTTP 400" in fields[b"error"]

    capsys.readouterr()
    assert (
        await asyncio.to_thread(main, ["dlq", "show", dlq_id.decode(), "--config", str(config)])
        == 0
    )
    dlq_shown = capsys.readouterr().out
    assert "answered HTTP 400" in json.loads(dlq_shown)["error"]
    assert await asyncio.to_thread(main, ["alerts", "show", alert_id, "--config", str(config)]) == 0
    timeline = capsys.readouterr().out
    assert "dead_lettered" in timeline
    server = AdminServer(settings).start()
    try:
        async with httpx.AsyncClient() as client:
            page = f"http://127.0.0.1:{server.port}"
            status_html = (await client.get(page + "/status")).text
            status_json = (await client.get(page + "/status.json")).text
    finally:
        server.stop()
    assert "answered HTTP 400" in status_json
    stored = await redis_text(redis)
    await redis.aclose()
    log_text = log_buffer.getvalue()
    assert "dead-lettered" in log_text

    leaks = {
        where: longest_leak(text)
        for where, text in (
            ("receiver dlq show", dlq_shown),
            ("receiver alerts show", timeline),
            ("/status", status_html),
            ("/status.json", status_json),
            ("worker log", log_text),
            ("redis", stored),
        )
    }
    assert leaks == dict.fromkeys(leaks, ""), leaks

"""Write-back to Graph after a ticket is created: the alert in the simulator shows it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import TypeAdapter

from receiver.config.sinks import EmailSinkSettings
from receiver.envelope import from_legacy, from_v2
from receiver.graph.client import client_for
from receiver.pipeline.tickets import RedisTicketStore
from receiver.pipeline.writeback import GraphWriteBack
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.http import ClientPool
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import build_sink
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings
from tests.sinks.conftest import Server
from tests.sinks.helpers import JIRA_TOKEN, http_config
from tests.sinks.vendors import FakeJira

EMAIL = TypeAdapter(EmailSinkSettings)


async def test_ticket_recorded_on_v2_and_legacy_alerts(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    server: Server,
    pool: ClientPool,
) -> None:
    sim = make_simulator(legacy_alerts="live")
    tid = sim.tenant.tenant_id
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    FakeJira(server, "bot@contoso.com", JIRA_TOKEN)
    sink = build_sink(
        http_config("jira", server.url, writeback=True),
        pool=pool,
        metrics=SinkMetrics(),
        tickets=RedisTicketStore(redis, Keys(settings.redis.key_prefix)),
        writeback=GraphWriteBack(graph),
    )
    try:
        v2_id = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"][0]
        legacy_id = await asyncio.to_thread(sim.control.create_alert, tid)
        v2 = await graph.get(tid, f"security/alerts_v2/{v2_id}")
        legacy = await graph.get(tid, f"security/alerts/{legacy_id}")
        first = await sink.send(from_v2(v2, "t0"), Delivery())
        second = await sink.send(from_legacy(legacy, "t0"), Delivery())
        v2_after = await graph.get(tid, f"security/alerts_v2/{v2_id}")
        legacy_after = await graph.get(tid, f"security/alerts/{legacy_id}")
    finally:
        await graph.aclose()
        await redis.aclose()
    comments = [c["comment"] for c in v2_after["comments"]]
    assert any(first.ticket_id in c and "jira-sink" in c for c in comments), comments
    assert f"ticket:jira-sink:{second.ticket_id}" in legacy_after["tags"]


async def test_email_through_graph_sendmail(
    make_simulator: Callable[..., Any],
    make_settings: MakeSettings,
    redis_url: str,
    pool: ClientPool,
) -> None:
    from receiver.pipeline.writeback import GraphMail

    sim = make_simulator()
    tid = sim.tenant.tenant_id
    settings = sim_settings(make_settings, sim, redis_url)
    redis = aioredis.Redis.from_url(redis_url)
    graph = client_for(settings, redis)
    sink = build_sink(
        EMAIL.validate_python(
            {
                "type": "email",
                "name": "mail",
                "transport": "graph",
                "tenant": "t0",
                "sender": "alerts@contoso.com",
                "to": ["soc@contoso.com"],
            }
        ),
        pool=pool,
        metrics=SinkMetrics(),
        mailer=GraphMail(graph, {"t0": tid}),
    )
    try:
        v2_id = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"][0]
        alert = from_v2(await graph.get(tid, f"security/alerts_v2/{v2_id}"), "t0")
        result = await sink.send(alert, Delivery())
        mails = await asyncio.to_thread(sim.control.mails, tid)
        unknown = build_sink(
            EMAIL.validate_python(
                {
                    "type": "email",
                    "name": "mail2",
                    "transport": "graph",
                    "tenant": "nowhere",
                    "sender": "alerts@contoso.com",
                    "to": ["soc@contoso.com"],
                }
            ),
            pool=pool,
            metrics=SinkMetrics(),
            mailer=GraphMail(graph, {"t0": tid}),
        )
        with pytest.raises(PermanentError, match="not configured"):
            await unknown.send(alert, Delivery())
    finally:
        await graph.aclose()
        await redis.aclose()
    assert "Graph sendMail" in result.detail
    assert len(mails) == 1
    mail = json.dumps(mails[0])
    assert alert.title in mail and "soc@contoso.com" in mail and alert.id in mail

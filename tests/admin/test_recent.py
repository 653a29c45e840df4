"""The route stage remembers the latest alerts (silenced ones too) for the status page; the
page's list reads them back newest first, with timelines, and without a Teams sink says why
there is no card preview (real Redis, the real route stage)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis

from receiver import clock
from receiver.admin._alerts import recent
from receiver.admin._cards import CardPreviews
from receiver.envelope import Envelope
from receiver.pipeline import records
from receiver.pipeline.consumer import Entry
from receiver.pipeline.route import RouteStage, save_silence
from receiver.routing.config import load_routes
from receiver.routing.silences import Silence
from receiver.store.keys import Keys
from tests.fixtures.settings import TENANT_ID, MakeSettings


async def test_route_stage_remembers_routed_and_silenced(
    make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text("route:\n  receiver: console\n")
    settings = make_settings(redis_url=redis_url)
    keys = Keys("{test}")
    client = aioredis.Redis.from_url(redis_url)
    try:
        await save_silence(
            client, keys, Silence.new(['severity="low"'], clock.now() + timedelta(hours=1), "noisy")
        )
        stage = RouteStage(client, keys, load_routes(routes_file, ["console"]), {"console"})
        for i, severity in enumerate(["high", "low", "medium"]):
            env = Envelope(
                id=f"a-{i}",
                tenant_id=TENANT_ID,
                source_api="alerts_v2",
                title=f"alert {i}",
                severity=severity,
                updated_at=f"2026-01-0{i + 1}",
            )
            first, changes = (b"0", b"status") if i == 2 else (b"1", b"")
            await stage.handle(
                Entry(
                    f"{i + 1}-0",
                    {b"e": env.to_json().encode(), b"first": first, b"changes": changes},
                    1,
                )
            )
        got = await recent(client, keys, CardPreviews(settings), 10)
        assert [a.envelope.id for a in got] == ["a-2", "a-1", "a-0"]
        assert [[e.event for e in a.timeline] for a in got] == [
            ["routed"],
            ["silenced"],
            ["routed"],
        ]
        assert got[0].envelope.is_update and got[0].envelope.changes == ("status",)
        assert all(
            a.card is None and a.card_note == "no Teams sink (format: adaptive) is configured"
            for a in got
        )
        assert len(await records.recent(client, keys, 2)) == 2
    finally:
        await client.aclose()


async def test_a_grouped_alert_says_it_went_out_in_a_group(
    make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text("route:\n  receiver: soc\n  group_by: [incident_id]\n")
    settings = make_settings(
        redis_url=redis_url,
        sinks=[{"type": "teams", "name": "soc", "url": "https://example.invalid/hook"}],
    )
    keys = Keys("{test}")
    client = aioredis.Redis.from_url(redis_url)
    try:
        stage = RouteStage(client, keys, load_routes(routes_file, ["soc"]), {"soc"})
        env = Envelope(
            id="a-1",
            tenant_id=TENANT_ID,
            source_api="alerts_v2",
            title="grouped alert",
            severity="high",
            incident_id="7",
            updated_at="2026-01-01",
        )
        await stage.handle(Entry("1-0", {b"e": env.to_json().encode(), b"first": b"1"}, 1))
        (got,) = await recent(client, keys, CardPreviews(settings), 10)
        assert [e.event for e in got.timeline] == ["grouped"]
        assert got.card_sink == "soc" and got.card is not None
        assert got.card_note == "sent to soc inside a group message; the alert's own card"
    finally:
        await client.aclose()

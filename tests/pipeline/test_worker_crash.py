"""`kill -9` of a real `receiver worker` process mid-batch: after a restart every alert is
delivered; none is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.graph.client import client_for
from receiver.graph.poller import Poller
from receiver.store.keys import Keys
from tests.fixtures.settings import MakeSettings
from tests.fixtures.web import served
from tests.graph.helpers import sim_settings, tenant_entry

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
async def test_kill_9_mid_batch_loses_nothing(
    make_simulator: Callable[..., Any], make_settings: MakeSettings, redis_url: str, tmp_path: Path
) -> None:
    got: list[str] = []

    async def hook(request: Request) -> Response:
        await asyncio.sleep(0.1)  # a slow sink: deliveries are in flight when we kill
        got.append(json.loads(await request.body())["id"])
        return Response(status_code=204)

    sim = make_simulator()
    (tmp_path / "routes.yaml").write_text("route:\n  receiver: hook\n")
    async with served(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        tenant = tenant_entry(sim.tenant, "contoso") | {
            "poll": {"alerts_v2": True, "incidents": False}
        }
        settings = sim_settings(
            make_settings,
            sim,
            redis_url,
            tenants=[tenant],
            sinks=[{"type": "webhook", "name": "hook", "url": url + "/hook"}],
            routes_file=str(tmp_path / "routes.yaml"),
            worker={"visibility_timeout_s": 1.0, "deliver_concurrency": 4},
        )
        config = tmp_path / "receiver.yaml"
        data = settings.model_dump(mode="json", exclude_none=True)
        data["tenants"][0]["client_secret"] = sim.tenant.app.secret
        data["sinks"][0]["url"] = url + "/hook"
        config.write_text(yaml.safe_dump(data))
        redis = aioredis.Redis.from_url(redis_url)
        graph = client_for(settings, redis)
        made = await asyncio.to_thread(
            sim.control.create_alerts, sim.tenant.tenant_id, 40, kind="v2"
        )
        assert (
            await Poller(redis, Keys(settings.redis.key_prefix), settings, graph).poll_all() == 40
        )
        await graph.aclose()

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "receiver.cli", "worker", "--config", str(config)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        first = start()
        for _ in range(300):
            if len(got) >= 8:
                break
            await asyncio.sleep(0.05)
        assert len(got) >= 8, first.stderr.read().decode() if first.stderr else ""
        os.kill(first.pid, signal.SIGKILL)  # no drain, no ack: whatever it held is pending
        first.wait()
        if first.stderr:
            first.stderr.close()
        at_kill = len(got)
        second = start()
        try:
            for _ in range(400):
                if set(made["ids"]) <= set(got):
                    break
                await asyncio.sleep(0.05)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
            if second.stderr:
                second.stderr.close()
        await redis.aclose()
    assert at_kill < 40  # it really died mid-batch
    assert set(got) == set(made["ids"])  # every alert delivered
    assert second.returncode == 0  # the restarted worker drained and stopped cleanly

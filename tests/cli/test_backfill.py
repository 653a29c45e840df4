"""`receiver backfill` against the simulator and `receiver dlq replay` on deliveries the real
pipeline dead-lettered, with their progress on stderr (real Redis, real loopback sink)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from receiver.cli import main
from receiver.config.loader import load_settings
from receiver.pipeline.worker import build_worker
from receiver.store.keys import Keys
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.graph.helpers import tenant_entry


class _Refuse(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(400)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(
    make_simulator: Callable[..., Any], write_config: WriteConfig, redis_url: str, refusing_url: str
) -> tuple[Path, Any]:
    sim = make_simulator()
    write_config("route:\n  receiver: audit\n", "routes.yaml")
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["graph"] = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
    }
    data["tenants"] = [tenant_entry(sim.tenant, "contoso")]
    data["sinks"] = [{"type": "webhook", "name": "audit", "url": refusing_url}]
    data["routes_file"] = "routes.yaml"
    return write_config(data), sim


def test_backfill_then_replay_with_progress(
    config: tuple[Path, Any], redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sim = config
    made = sim.control.create_alerts(sim.tenant.tenant_id, 30, kind="v2")
    assert main(["backfill", "contoso", "--hours", "2", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    # alerts_v2 and, as the tenant polls them (the default), their 30 incidents
    assert "backfill contoso: 60 alert(s) and incident(s) changed since" in out
    # the progress display's last line (other tests may leave log handlers on stderr)
    assert re.search(
        r"^backfill contoso: 60, [\d.]+/s, 0:0\d elapsed \(done\)$", err, re.MULTILINE
    ), err
    keys = Keys("{test}")
    with redis.Redis.from_url(redis_url) as r:
        assert r.xlen(keys.notifications) == 60

    settings = load_settings(path)

    async def work() -> None:
        client = aioredis.Redis.from_url(redis_url)
        worker = build_worker(settings, client)
        await worker.run(burst=True)
        await worker.sinks.aclose()
        await worker.graph.aclose()
        await client.aclose()

    # The sink refuses every delivery: dead letters (until its circuit breaker opens and
    # holds the rest back for a retry).
    asyncio.run(work())
    with redis.Redis.from_url(redis_url) as r:
        dead = r.xlen(keys.dlq("audit"))
        queued = r.xlen(keys.sink("audit"))
    assert dead >= 5
    assert main(["dlq", "replay", "--all", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert f"audit: {dead} replayed" in out and f"{dead} deliveries back in their queues" in out
    assert re.search(
        rf"^dlq replay: {dead}/{dead} \(100%\), [\d.]+/s, 0:0\d elapsed "
        r"\(done\)$",
        err,
        re.MULTILINE,
    ), err
    with redis.Redis.from_url(redis_url) as r:
        assert r.xlen(keys.dlq("audit")) == 0 and r.xlen(keys.sink("audit")) == queued + dead
    assert len(made["ids"]) == 30


def test_backfill_names_the_tenant_in_any_case(
    config: tuple[Path, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The tenant by name or id in any case (Settings.find_tenant), as every command reads it."""
    path, sim = config
    for name in ("CONTOSO", sim.tenant.tenant_id.upper()):
        assert main(["backfill", name, "--hours", "1", "--config", str(path)]) == 0
        assert "backfill contoso: 0 alert(s) and incident(s)" in capsys.readouterr().out


def test_backfill_refuses_bad_input(
    config: tuple[Path, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    assert main(["backfill", "fabrikam", "--config", str(path)]) == 1
    assert (
        "receiver backfill: no tenant 'fabrikam' in the settings (configured: contoso)"
        in capsys.readouterr().err
    )
    assert main(["backfill", "contoso", "--since", "yesterday", "--config", str(path)]) == 1
    assert "--since 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err
    assert (
        main(["backfill", "contoso", "--since", "2999-01-01T00:00:00Z", "--config", str(path)]) == 1
    )
    assert "is not in the past" in capsys.readouterr().err
    assert main(["backfill", "contoso", "--hours", "0", "--config", str(path)]) == 1
    assert "--hours must be more than 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["backfill", "contoso", "--hours", "1", "--since", "2026-01-01T00:00:00Z"])

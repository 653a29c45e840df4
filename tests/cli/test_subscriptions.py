"""`receiver subscriptions list|sync|delete` and `receiver scheduler`: the operator's view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.cli import main
from receiver.store.keys import Keys
from receiver.store.lease import Lease
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle
from tests.graph.helpers import RESOURCE, tenant_entry


def _config(
    write_config: WriteConfig, sim: SimulatorHandle, redis_url: str, url: str, **tenant: Any
) -> Path:
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["web"]["public_url"] = url
    data["graph"] = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
        "max_retries": 0,
    }
    entry = tenant_entry(sim.tenant, "contoso", subscriptions=[{"resource": RESOURCE}])
    entry.update(tenant)
    data["tenants"] = [entry]
    return write_config(data)


def test_sync_list_delete(
    simulator: SimulatorHandle,
    loopback_receiver: Callable[..., LoopbackReceiver],
    redis_url: str,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = loopback_receiver()
    config = str(_config(write_config, simulator, redis_url, receiver.url))
    assert main(["subscriptions", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["TENANT", "RESOURCE", "ID", "EXPIRES", "IN", "STATE"]
    assert "missing" in out.splitlines()[1]

    assert main(["subscriptions", "sync", "--config", config]) == 0
    assert "1 created" in capsys.readouterr().out
    [sub] = simulator.control.subscriptions()
    assert main(["subscriptions", "sync", "--config", config]) == 0
    assert "0 created" in capsys.readouterr().out and len(simulator.control.subscriptions()) == 1

    assert main(["subscriptions", "list", "--config", config]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.startswith("contoso") and RESOURCE in row and sub["id"] in row
    assert row.split()[-1] == "ok" and "29d 22h 59m" in row  # 43,140 minutes, less a moment

    assert main(["subscriptions", "delete", "--config", config, "no-such-id"]) == 1
    assert "no subscription no-such-id" in capsys.readouterr().err
    assert main(["subscriptions", "delete", "--all", "--config", config]) == 0
    assert "1 subscription(s) deleted" in capsys.readouterr().out
    assert simulator.control.subscriptions() == []


def test_sync_refuses_while_a_scheduler_holds_the_lease(
    simulator: SimulatorHandle,
    redis_url: str,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(_config(write_config, simulator, redis_url, "http://127.0.0.1:9"))

    async def hold() -> str:
        redis = Redis.from_url(redis_url)
        try:
            lease = Lease(redis, Keys("{test}"), 30)
            assert await lease.acquire()
            return lease.owner
        finally:
            await redis.aclose()

    owner = asyncio.run(hold())
    assert main(["subscriptions", "sync", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "lease is held by" in err and owner in err
    assert simulator.control.subscriptions() == []


def test_graph_and_redis_failures_are_clear(
    simulator: SimulatorHandle,
    redis_url: str,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = str(
        _config(
            write_config,
            simulator,
            redis_url,
            "http://127.0.0.1:9",
            client_secret="wrong-secret-for-the-test",
        )
    )
    assert main(["subscriptions", "list", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "tenant contoso" in err and "AADSTS7000215" in err
    assert "wrong-secret-for-the-test" not in err
    assert main(["subscriptions", "sync", "--config", config]) == 1
    assert "AADSTS7000215" in capsys.readouterr().err

    data = base_settings_data()
    data["redis"].update(url="redis://127.0.0.1:1/0", connect_retries=0)
    down = str(write_config(data, "down.yaml"))
    assert main(["subscriptions", "list", "--config", down]) == 1
    assert "Redis at redis://127.0.0.1:1/0 unavailable" in capsys.readouterr().err
    assert main(["scheduler", "--config", down]) == 1
    assert "Redis at redis://127.0.0.1:1/0 unavailable" in capsys.readouterr().err


def test_settings_are_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RECEIVER_CONFIG", raising=False)
    assert main(["scheduler"]) == 1
    assert "give a settings file" in capsys.readouterr().err
    assert main(["subscriptions", "list"]) == 1
    assert "give a settings file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["subscriptions"])
    assert usage.value.code == 2

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.graph.subscriptions import LeaseLost
from receiver.keys import Keys
from receiver.scheduler import Lease
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle
from tests.graph.helpers import RESOURCE, tenant_entry

KEYS = Keys("{test}")


async def test_lease_is_exclusive_renewed_and_fenced(redis_url: str) -> None:
    a_conn, b_conn = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        a, b = Lease(a_conn, KEYS, 0.4), Lease(b_conn, KEYS, 0.4)
        assert await a.acquire() and a.fence == 1
        assert not await b.acquire()
        await asyncio.sleep(0.25)
        assert await a.renew()  # extended: still held after the first lease time
        await asyncio.sleep(0.25)
        assert not await b.acquire()
        await a.check()
        await a.claim("sub-1", "renew", dt.datetime.now(dt.UTC))
        assert await a_conn.hget(KEYS.subscription_touch("sub-1"), "fence") == b"1"
        # The holder stalls past its lease: another process takes over with a higher fence.
        await asyncio.sleep(0.5)
        assert not a.held  # its own clock already told it to stop
        assert await b.acquire() and b.fence == 2
        with pytest.raises(LeaseLost):
            await a.check()
        assert not await a.renew()
        await b.claim("sub-1", "renew", dt.datetime.now(dt.UTC))
        assert await a_conn.hget(KEYS.subscription_touch("sub-1"), "fence") == b"2"
        # A clean shutdown hands over at once.
        await b.release()
        assert await a.acquire() and a.fence == 3
        # Only the holder's token releases.
        await b.release()
        assert await a.holder() == a.owner
    finally:
        await a_conn.aclose()
        await b_conn.aclose()


def _log_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _ts(row: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(row["ts"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_three_scheduler_processes_one_acts_and_another_takes_over(
        simulator: SimulatorHandle, loopback_receiver: Callable[..., LoopbackReceiver],
        redis_url: str, write_config: WriteConfig, tmp_path: Path) -> None:
    receiver = loopback_receiver()
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["web"]["public_url"] = receiver.url
    data["graph"] = {"authority_host": simulator.base_url, "graph_url": simulator.graph_url,
                     "ca_bundle": str(simulator.ca_path)}
    data["tenants"] = [tenant_entry(simulator.tenant, "contoso",
                                    subscriptions=[{"resource": RESOURCE,
                                                    "lifetime_minutes": 45}])]
    # Renew on every reconcile (every 0.5 s): a second actor would show at once.
    data["scheduler"] = {"lease_s": 1.5, "heartbeat_s": 0.25, "reconcile_interval_s": 0.5,
                         "renewal_fraction": 0.9999, "renewal_jitter": 0,
                         "lifecycle_interval_s": 0.5}
    data["logging"] = {"format": "json", "level": "INFO"}
    config = write_config(data)
    logs = [tmp_path / f"scheduler-{i}.log" for i in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    procs = []
    for log in logs:
        with log.open("wb") as err:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "receiver.cli", "scheduler", "--config", str(config)],
                stdout=subprocess.DEVNULL, stderr=err, env=env))

    def acquired(i: int) -> list[int]:
        return [int(r["msg"].split("fence ")[1].split(")")[0]) for r in _log_lines(logs[i])
                if r["msg"].startswith("scheduler lease acquired")]

    def renewals(i: int) -> list[dict[str, Any]]:
        return [r for r in _log_lines(logs[i]) if r["msg"].startswith("subscription renewed")]

    def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("".join(p.read_text()[-2000:] for p in logs))
            time.sleep(0.05)

    try:
        wait_until(lambda: any(renewals(i) for i in range(3)), 20)
        leaders = [i for i in range(3) if acquired(i)]
        assert len(leaders) == 1
        leader = leaders[0]
        wait_until(lambda: len(renewals(leader)) >= 4, 10)
        time.sleep(0.3)
        for i in range(3):
            if i != leader:
                assert not renewals(i) and not acquired(i)
        first_fence = acquired(leader)[0]
        killed_at = time.time()
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(5)
        before = simulator.control.counters()["subscriptions.renewed"]
        wait_until(lambda: any(acquired(i) for i in range(3) if i != leader), 10)
        successor = next(i for i in range(3) if i != leader and acquired(i))
        took_over = next(_ts(r) for r in _log_lines(logs[successor])
                         if r["msg"].startswith("scheduler lease acquired"))
        assert took_over - killed_at <= 1.5 + 0.25 + 0.5  # lease + heartbeat + slack
        assert acquired(successor) == [first_fence + 1]
        wait_until(lambda: len(renewals(successor)) >= 3, 10)
        time.sleep(0.3)
        third = 3 - leader - successor
        assert not renewals(third) and not acquired(third)
        # Every PATCH Graph saw was made by the lease holder of its time, and never two
        # renewals of the subscription within one reconcile interval.
        all_renewals = sorted(renewals(leader) + renewals(successor), key=_ts)
        assert simulator.control.counters()["subscriptions.renewed"] == len(all_renewals)
        assert simulator.control.counters()["subscriptions.renewed"] > before
        times = [_ts(r) for r in all_renewals]
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.3
        assert all(f"(fence {first_fence + 1})" in r["msg"] for r in renewals(successor))
        assert all(f"(fence {first_fence})" in r["msg"] for r in renewals(leader))
        assert len({r["subscription_id"] for r in all_renewals}) == 1
        assert len(simulator.control.subscriptions()) == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # A clean stop releases the lease (the successor exited by SIGTERM).
    assert procs[successor].returncode == 0
    assert any(r["msg"] == "scheduler stopped" for r in _log_lines(logs[successor]))

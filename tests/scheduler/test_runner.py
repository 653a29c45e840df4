"""The scheduler lease and its runner: one actor among many processes, handed over on death.

Neither `Lease` nor `SchedulerRunner` takes a clock (the lease's local safety margin reads
`time.monotonic()`, its expiry is Redis' PX), so these tests wait on what can be observed --
the lease holder and the fencing counter in Redis, the key's remaining time, each process'
own job counters on its /metrics, the simulator's counters -- and then assert exact values.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from receiver.store.keys import Keys
from receiver.store.lease import Lease, LeaseLost
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import LoopbackReceiver, SimulatorHandle
from tests.fixtures.waiting import wait_until, wait_until_async
from tests.fixtures.web import free_port
from tests.graph.helpers import RESOURCE, tenant_entry

KEYS = Keys("{test}")


async def _now(value: bool) -> bool:
    return value


async def test_lease_is_exclusive_renewed_and_fenced(redis_url: str) -> None:
    a_conn, b_conn = Redis.from_url(redis_url), Redis.from_url(redis_url)
    lease_ms = 2000
    try:
        a, b = Lease(a_conn, KEYS, lease_ms / 1000), Lease(b_conn, KEYS, lease_ms / 1000)
        assert await a.acquire() and a.fence == 1
        assert await a.holder() == a.owner
        assert 0 < await a_conn.pttl(KEYS.leader) <= lease_ms
        assert not await b.acquire() and b.fence == 0
        # Renewal extends the lease in Redis: with most of it gone (shortened here, as if
        # the time had passed), a renewal makes it whole again.
        await a_conn.pexpire(KEYS.leader, 500)
        assert await a.renew()
        assert 500 < await a_conn.pttl(KEYS.leader) <= lease_ms
        assert not await b.acquire()
        await a.check()
        await a.claim("sub-1", "renew", dt.datetime.now(dt.UTC))
        assert await a_conn.hget(KEYS.subscription_touch("sub-1"), "fence") == b"1"
        # The holder stalls (no more renewals). Its own clock tells it to stop first, at
        # 90 % of the lease, while Redis still keeps the lease for it: nobody acts yet.
        await wait_until_async(
            lambda: _now(a.held),
            lambda held: not held,
            timeout_s=10,
            what="the stalled holder stops on its own clock",
        )
        assert await a.holder() == a.owner
        assert not await b.acquire()
        with pytest.raises(LeaseLost):
            await a.claim("sub-1", "renew", dt.datetime.now(dt.UTC))
        # Then Redis lets the lease run out, and another process takes over, fenced higher.
        await wait_until_async(
            a.holder, lambda holder: holder is None, timeout_s=10, what="the lease ran out in Redis"
        )
        assert await b.acquire() and b.fence == 2
        with pytest.raises(LeaseLost):
            await a.check()
        assert not await a.renew()
        await b.claim("sub-1", "renew", dt.datetime.now(dt.UTC))
        assert await a_conn.hget(KEYS.subscription_touch("sub-1"), "fence") == b"2"
        # A clean shutdown hands over at once.
        await b.release()
        assert await a.holder() is None
        assert await a.acquire() and a.fence == 3
        # Only the holder's token releases.
        await b.release()
        assert await a.holder() == a.owner
    finally:
        await a_conn.aclose()
        await b_conn.aclose()


def _metrics(port: int) -> dict[str, float]:
    """A scheduler process' /metrics as {"name{label=value,...}": value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _renewed(metrics: dict[str, float]) -> float:
    return metrics.get("receiver_subscription_operations_total{operation=renew,outcome=ok}", 0.0)


def _acted(metrics: dict[str, float]) -> float:
    """Everything a lease holder's jobs count: subscription operations and reconciles."""
    return sum(
        v
        for k, v in metrics.items()
        if k.startswith(
            ("receiver_subscription_operations_total{", "receiver_subscription_reconciles_total{")
        )
    )


@pytest.mark.slow
def test_three_scheduler_processes_one_acts_and_another_takes_over(
    simulator: SimulatorHandle,
    loopback_receiver: Callable[..., LoopbackReceiver],
    redis_url: str,
    write_config: WriteConfig,
    tmp_path: Path,
) -> None:
    receiver = loopback_receiver()
    lease_s, heartbeat_s = 1.5, 0.25
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["web"]["public_url"] = receiver.url
    data["graph"] = {
        "authority_host": simulator.base_url,
        "graph_url": simulator.graph_url,
        "ca_bundle": str(simulator.ca_path),
    }
    data["tenants"] = [
        tenant_entry(
            simulator.tenant,
            "contoso",
            subscriptions=[{"resource": RESOURCE, "lifetime_minutes": 45}],
        )
    ]
    # Renew on every reconcile (every 0.5 s): a second actor would show at once.
    data["scheduler"] = {
        "lease_s": lease_s,
        "heartbeat_s": heartbeat_s,
        "reconcile_interval_s": 0.5,
        "renewal_fraction": 0.9999,
        "renewal_jitter": 0,
        "lifecycle_interval_s": 0.5,
    }
    data["logging"] = {"format": "json", "level": "INFO"}
    config = write_config(data)
    keys = Keys(data["redis"]["key_prefix"])
    logs = [tmp_path / f"scheduler-{i}.log" for i in range(3)]
    ports = [free_port() for _ in range(3)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    procs = []
    for log, port in zip(logs, ports, strict=True):
        with log.open("wb") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "receiver.cli", "scheduler", "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env={**env, "RECEIVER_METRICS__PORT": str(port)},
                )
            )
    pids = [p.pid for p in procs]
    client = redis.Redis.from_url(redis_url)

    def logs_tail() -> str:
        return "".join(f"--- scheduler {i}:\n{p.read_text()[-1500:]}" for i, p in enumerate(logs))

    def holder() -> int | None:
        """Which process holds the lease (its pid is in the owner token), if any."""
        raw = client.get(keys.leader)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        pid = int(text.rsplit(":", 2)[1])
        assert pid in pids, raw
        return pids.index(pid)

    def fence() -> int:
        return int(client.get(keys.fencing) or 0)

    def metrics(i: int) -> dict[str, float]:
        try:
            return _metrics(ports[i])
        except httpx.HTTPError as exc:
            raise AssertionError(f"scheduler {i} /metrics: {exc!r}\n{logs_tail()}") from None

    def serving(i: int) -> bool:
        try:
            _metrics(ports[i])
        except httpx.HTTPError:
            return False
        return True

    try:
        for i in range(3):
            wait_until(
                functools.partial(serving, i),
                bool,
                timeout_s=30,
                what=f"scheduler {i} serving /metrics",
            )
        first = wait_until(holder, lambda h: h is not None, timeout_s=20, what="a lease holder")
        assert first is not None
        leader = first
        wait_until(
            lambda: _renewed(metrics(leader)),
            lambda n: n >= 4,
            timeout_s=20,
            what="four renewals by the leader",
        )
        # Four renewals later: the fencing counter says nobody else ever acquired the lease,
        # and the standbys' own counters say they ran no job.
        assert fence() == 1 and holder() == leader
        lead = metrics(leader)
        assert lead["receiver_scheduler_leader{}"] == 1 and lead["receiver_scheduler_fence{}"] == 1
        for i in range(3):
            if i != leader:
                standby = metrics(i)
                assert standby["receiver_scheduler_leader{}"] == 0
                assert _acted(standby) == 0, standby
        assert client.hget(keys.subscription_touch(_only_subscription(simulator)), "fence") == b"1"
        renewed_by_leader = _renewed(metrics(leader))
        # The leader dies without a word: Redis ends its lease within lease_s, and a standby
        # takes over within one heartbeat of that, fenced one higher.
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait(5)
        killed = time.monotonic()
        left_ms = client.pttl(keys.leader)
        assert 0 < left_ms <= lease_s * 1000
        found = wait_until(
            holder,
            lambda h: h is not None and h != leader,
            timeout_s=lease_s + heartbeat_s + 5,
            what="a successor",
        )
        assert found is not None
        successor = found
        took = time.monotonic() - killed
        assert took <= left_ms / 1000 + heartbeat_s + 1.0, (took, left_ms)
        assert fence() == 2
        wait_until(
            lambda: _renewed(metrics(successor)),
            lambda n: n >= 3,
            timeout_s=20,
            what="three renewals by the successor",
        )
        third = 3 - leader - successor
        assert fence() == 2 and holder() == successor  # the third never acquired
        after = metrics(successor)
        assert after["receiver_scheduler_fence{}"] == 2
        last = metrics(third)
        assert last["receiver_scheduler_leader{}"] == 0 and _acted(last) == 0, last
        # Graph saw every renewal the two holders counted (and the last one was fenced by
        # the successor); one subscription throughout.
        renewed = simulator.control.counters()["subscriptions.renewed"]
        assert renewed >= renewed_by_leader + _renewed(after)
        assert client.hget(keys.subscription_touch(_only_subscription(simulator)), "fence") == b"2"
        assert len(simulator.control.subscriptions()) == 1
        # A clean stop releases the lease: stop the third first (so nobody can take it over),
        # then the successor; the lease is gone sooner than it could have run out.
        procs[third].send_signal(signal.SIGTERM)
        assert procs[third].wait(10) == 0
        left_ms = client.pttl(keys.leader)  # at least this much is left when it stops
        stopping = time.monotonic()
        procs[successor].send_signal(signal.SIGTERM)
        wait_until(holder, lambda h: h is None, timeout_s=10, what="the lease released")
        released = time.monotonic() - stopping
        assert released < left_ms / 1000, (released, left_ms)  # released, not run out
        assert procs[successor].wait(10) == 0, logs_tail()
        assert fence() == 2
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
        client.close()


def _only_subscription(simulator: SimulatorHandle) -> str:
    (sub,) = simulator.control.subscriptions()
    return str(sub["id"])

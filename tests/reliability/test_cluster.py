"""The whole pipeline on a three-master Redis Cluster: simulator -> `receiver serve` (cluster
client) -> recording sinks; every alert delivered once, every ticket opened once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from receiver.config.settings import RedisSettings
from receiver.store.client import connect, is_cluster
from receiver.store.keys import Keys
from tests.fixtures.redis_cluster import RedisCluster
from tests.reliability._deploy import TENANT, Deployment, Topology
from tests.reliability._sinks import SinkServer


@pytest.mark.slow
def test_serve_on_a_redis_cluster_delivers_every_alert_once(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    with SinkServer(["hook"]) as sinks:
        deployment = Deployment(
            tmp_path,
            redis_url=redis_cluster.url,
            cluster=True,
            topology=Topology(serve=True),
            sinks_url=sinks.url,
            hooks=["hook"],
        )
        try:
            deployment.start_simulator()
            deployment.start_receiver(f"http://127.0.0.1:{deployment.web_ports[0]}")
            deployment.wait_subscription()
            control = deployment.control
            assert control is not None
            pushed = control.create_alerts(TENANT, 40)["ids"]
            polled = control.create_alerts(TENANT, 5, kind="v2")["ids"]
            control.inject_fault("duplicate_notifications", count=10)
            # Each polled alerts_v2 alert comes with its incident, polled too (by default).
            incidents = {
                str(a["incidentId"]) for a in control.alerts(TENANT, "v2") if a["id"] in polled
            }
            assert len(incidents) == 5
            expected = set(pushed) | set(polled) | incidents
            arrivals = sinks.hooks["hook"].arrivals

            def until(done: Callable[[], bool]) -> None:
                deadline = time.monotonic() + 60
                while not done() and time.monotonic() < deadline:
                    time.sleep(0.2)

            until(
                lambda: (
                    expected <= {a.alert_id for a in arrivals if a.first_seen}
                    and expected <= set(sinks.tickets_per_alert())
                )
            )
            control.update_alert(TENANT, pushed[0], {"status": "inProgress"})
            until(lambda: any(not a.first_seen for a in arrivals))
            time.sleep(1)  # a duplicate would arrive now
            serve = deployment.procs["serve"]
            assert serve.alive() and not serve.unexpected_exits, serve.tail()
        finally:
            deployment.stop()
    firsts = [a.alert_id for a in arrivals if a.first_seen]
    assert sorted(firsts) == sorted(expected), serve.tail()
    assert [(a.alert_id, a.status) for a in arrivals if not a.first_seen] == [
        (pushed[0], "inProgress")
    ]
    assert sinks.tickets_per_alert() == dict.fromkeys(expected, 1)
    asyncio.run(_pipeline_and_script_on_one_slot(redis_cluster.url))
    # The data really lives on the cluster, in the one slot of the prefix's hash tag.
    keys = Keys()
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        slot = client.keyslot(keys.notifications)
        assert client.keyslot(keys.sink("hook")) == slot
        owner = client.nodes_manager.get_node_from_slot(slot)
        assert owner is not None
        assert int(client.get(keys.fencing) or 0) >= 1  # the lease was taken on the cluster
        assert client.exists(keys.dedup(TENANT, pushed[0])) == 1
        assert client.xlen(keys.poison) == 0
    finally:
        client.close()


async def _pipeline_and_script_on_one_slot(url: str) -> None:
    """A transaction pipeline and a script on keys of one slot, as the pipeline uses them,
    through the client ``connect`` makes."""
    client = await connect(RedisSettings(url=url, cluster=True))
    try:
        assert is_cluster(client)
        keys = Keys(prefix="{check}")
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.notifications, {"e": "1"})
            pipe.xadd(keys.alerts, {"e": "2"})
            first, second = await pipe.execute()
        assert first and second
        script = client.register_script("return redis.call('XLEN', KEYS[1])")
        assert await script(keys=[keys.alerts]) == 1
    finally:
        await client.aclose()


def test_cluster_settings_need_a_tcp_url_and_database_0() -> None:
    from pydantic import ValidationError

    assert RedisSettings(url="redis://10.0.0.1:7000/0", cluster=True).cluster
    for url, why in (("unix:///run/redis.sock", "not unix://"), ("redis://h:7000/3", "database 0")):
        with pytest.raises(ValidationError, match=why):
            RedisSettings(url=url, cluster=True)


async def test_cluster_client_on_a_plain_redis_fails_at_once(redis_url: str) -> None:
    from redis.exceptions import RedisClusterException

    started = time.monotonic()
    with pytest.raises(RedisClusterException, match="Cluster mode is not enabled"):
        await connect(RedisSettings(url=redis_url, cluster=True, connect_retries=5))
    assert time.monotonic() - started < 2  # a configuration error: not retried

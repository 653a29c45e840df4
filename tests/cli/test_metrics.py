"""Every role serves its metrics: the worker's backlog and deliveries on its metrics port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from prometheus_client import CollectorRegistry, Counter

from receiver.cli.metrics import combined
from receiver.envelope import Envelope
from receiver.store.keys import Keys
from tests.fixtures.settings import TENANT_ID, WriteConfig, base_settings_data
from tests.fixtures.web import free_port

REPO = Path(__file__).resolve().parents[2]


def test_combined_registries_show_everything() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Counter("first_thing", "a", registry=a).inc()
    Counter("second_thing", "b", registry=b).inc(2)
    both = combined([a, b])
    assert both.get_sample_value("first_thing_total") == 1
    assert both.get_sample_value("second_thing_total") == 2


def test_worker_serves_lag_and_delivery_metrics(write_config: WriteConfig, redis_url: str) -> None:
    port = free_port()
    write_config("route:\n  receiver: console\n", "routes.yaml")
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["routes_file"] = "routes.yaml"
    data["metrics"] = {"port": port}
    config = write_config(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", "worker", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    envelope = Envelope(
        id="a-1",
        tenant_id=TENANT_ID,
        source_api="alerts_v2",
        title="t",
        severity="high",
        tenant="contoso",
    )
    with redis.Redis.from_url(redis_url) as client:  # an alert ready to route and deliver
        client.xadd(Keys("{test}").alerts, {"e": envelope.to_json(), "first": "1"})
    try:
        text = ""
        for _ in range(100):
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                if "receiver_stream_lag" in text and "receiver_deliveries_total{" in text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert 'receiver_stream_lag{kind="unread",stream="{test}:stream:notifications"}' in text
        assert 'receiver_route_outcomes_total{outcome="routed"} 1.0' in text
        assert 'receiver_deliveries_total{outcome="delivered",sink="console"} 1.0' in text
        assert "receiver_sink_deliveries_total{" in text
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(20)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == 0


def test_metrics_port_in_use_is_a_clear_error() -> None:
    import socket

    import pytest

    from receiver.cli.metrics import serve_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"metrics.port {port} on 127.0.0.1"):
            serve_metrics("127.0.0.1", port, [CollectorRegistry()])

"""The roles start the admin server when admin.port is set (real processes, real Redis)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.web import free_port


@pytest.mark.slow
@pytest.mark.parametrize("role", ["worker", "web"])
def test_role_serves_the_status_page(
    role: str, write_config: WriteConfig, redis_url: str, tmp_path: Path
) -> None:
    write_config("route:\n  receiver: console\n", "routes.yaml")
    data = base_settings_data()
    data["redis"]["url"] = redis_url
    data["routes_file"] = "routes.yaml"
    data["web"]["port"] = free_port()
    data["admin"] = {"port": free_port(), "token": "role-admin-token-0123456789"}
    config = write_config(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver.cli", role, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{data['admin']['port']}/status"
    auth = {"authorization": f"Bearer {data['admin']['token']}"}

    def ready() -> bool:  # the role is up (and handles SIGTERM) too, not only the page
        if role == "worker":
            return "<td>worker</td>" in httpx.get(url, headers=auth).text
        return httpx.get(f"http://127.0.0.1:{data['web']['port']}/healthz").status_code == 200

    try:
        for _ in range(400):
            try:
                if ready():
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        answer = httpx.get(url, headers=auth)
        assert answer.status_code == 200
        assert "<h2>Stream lag per stage</h2>" in answer.text
        assert httpx.get(url).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # uvicorn re-raises the SIGTERM it handled once it has shut down (web).
    assert proc.returncode in ((0, -signal.SIGTERM) if role == "web" else (0,)), err
    assert "role-admin-token" not in err


def test_admin_port_in_use_stops_the_role(write_config: WriteConfig, redis_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        write_config("route:\n  receiver: console\n", "routes.yaml")
        data = base_settings_data()
        data["redis"]["url"] = redis_url
        data["routes_file"] = "routes.yaml"
        data["admin"] = {"port": taken.getsockname()[1]}
        config = write_config(data)
        done = subprocess.run(
            [sys.executable, "-m", "receiver.cli", "worker", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert f"receiver worker: admin.port {data['admin']['port']} on 127.0.0.1:" in done.stderr

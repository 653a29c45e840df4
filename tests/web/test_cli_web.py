"""`receiver web` as a user runs it: the shipped example config and a reachable Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fixtures.web import free_port

REPO = Path(__file__).resolve().parents[2]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            return httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_web_starts_with_example_config(redis_url: str) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "web",
            "--config",
            str(REPO / "config" / "receiver.example.yaml"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_ready(base + "/healthz", proc).text == "ok"
        assert httpx.get(base + "/readyz").status_code == 200
        r = httpx.post(base + "/webhooks/graph", params={"validationToken": "abc def"})
        assert (r.status_code, r.text) == (200, "abc def")
        assert "receiver_web_requests_total" in httpx.get(base + "/metrics").text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == 0


def test_web_refuses_bad_config_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("web:\n  port: nine\n")
    out = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "web", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert f"{bad}:2: web.port:" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "web"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "RECEIVER_CONFIG"},
    )
    assert out.returncode == 1
    assert "--config" in out.stderr
